"""Checks real answers of a dta node against the node's OpenAPI document with openapi-core,
an independent validator: for each exchange (one JSON object per line of the file given:
method, path as called, status, content type, body as text or, for bytes that are not
text, `body_base64`), the answer's status, media type
and body must be what the document says of that path and method. Prints one line per
failure and a summary; exits 1 if any failed or none was checked.

Usage: openapi_answers.py DOCUMENT EXCHANGES
"""

import base64
import json
import sys

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse


def main() -> int:
    document_path, exchanges_path = sys.argv[1], sys.argv[2]
    with open(document_path, encoding="utf-8") as file:
        openapi = OpenAPI.from_dict(json.load(file))
    checked, failed = 0, 0
    with open(exchanges_path, encoding="utf-8") as file:
        for line in file:
            if not line.strip():
                continue
            exchange = json.loads(line)
            path, _, query = exchange["path"].partition("?")
            args = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
            request = MockRequest(
                "http://127.0.0.1", exchange["method"].lower(), path, args=args
            )
            if "body_base64" in exchange:
                data = base64.b64decode(exchange["body_base64"])
            else:
                data = exchange["body"].encode("utf-8")
            response = MockResponse(
                data,
                status_code=exchange["status"],
                content_type=exchange["content_type"],
            )
            checked += 1
            try:
                openapi.validate_response(request, response)
            except Exception as error:  # every kind of mismatch is reported alike
                failed += 1
                causes = getattr(error, "schema_errors", None) or getattr(error, "__cause__", None)
                print(
                    f"FAIL {exchange['method']} {exchange['path']} {exchange['status']}: "
                    f"{type(error).__name__}: {error} {causes or ''}"
                )
    print(f"openapi answers: {checked} checked, {failed} failed")
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
