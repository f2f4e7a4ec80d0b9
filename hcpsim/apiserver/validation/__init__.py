"""Validation of custom resources against a CRD version's openAPIV3Schema, as kube-apiserver does it.

    schema = compile_schema(crd["spec"]["versions"][i]["schema"]["openAPIV3Schema"])
    schema.apply_defaults(obj); schema.prune(obj)
    errors = schema.validate(obj, old)   # list[FieldError]; old is the stored object on update

See schema.py for the order of checks, openapi.py for OpenAPI value validation and messages,
cel.py / cel_eval.py / k8s_cel_ext.py for x-kubernetes-validations.
"""

from hcpsim.apiserver.errors import FieldError
from hcpsim.apiserver.validation.schema import CompiledSchema, compile_schema

__all__ = ["CompiledSchema", "FieldError", "compile_schema"]
