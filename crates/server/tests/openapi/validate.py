"""Validates the OpenAPI document on stdin against the OpenAPI 3.1 schema (and its own
references) with openapi-spec-validator. Exits 0 when valid; prints every error and exits 1
otherwise."""

import json
import sys

from openapi_spec_validator.validation import OpenAPIV31SpecValidator


def main() -> int:
    document = json.load(sys.stdin)
    if document.get("openapi", "").split(".")[:2] != ["3", "1"]:
        print(f"not an OpenAPI 3.1 document: openapi = {document.get('openapi')!r}")
        return 1
    errors = list(OpenAPIV31SpecValidator(document).iter_errors())
    for error in errors:
        print(f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}")
    if errors:
        return 1
    print("valid OpenAPI 3.1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
