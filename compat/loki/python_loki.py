"""Pushes records through python-logging-loki (JSON, emitter versions 1 and
0) and prints every payload it posted as one JSON list. Exits non-zero when
a push is not answered with 204."""
import json
import logging
import sys

import requests
import logging_loki

url, job = sys.argv[1], sys.argv[2]
sent = []
orig_post = requests.Session.post


def post(self, u, json=None, **kw):
    resp = orig_post(self, u, json=json, **kw)
    if resp.status_code != 204:
        print(f"push to {u} answered {resp.status_code}: {resp.text}", file=sys.stderr)
        sys.exit(1)
    sent.append({"url": u, "payload": json})
    return resp


requests.Session.post = post
for version, path in (("1", "/loki/api/v1/push"), ("0", "/api/prom/push")):
    handler = logging_loki.LokiHandler(url=url + path, tags={"job": job, "emitter": "v" + version}, version=version)
    logger = logging.getLogger("compat-" + version)
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.info("python says hello")
    logger.warning("disk at 91%% on %s", "/var")
    logger.error("unicode ✓ \"quoted\"", extra={"tags": {"request_id": "r-17"}})
print(json.dumps(sent))
