"""The capture routes take a body the way PostHog's capture does, not only the way one SDK
sends it: JSON sent with `curl -d` (which labels every body a form), a `data=` form holding
JSON, and base64 whose `+` the client did not percent-encode."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.daemon_process import DaemonProcess

FORM = "application/x-www-form-urlencoded"
# ">>>" makes "+" in base64: the character a careless form encoder leaves bare.
EVENT = {"event": "form.case", "distinct_id": "u", "properties": {"arrows": ">>>?>>>"}}


def as_base64(document: object) -> str:
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    assert "+" in encoded
    return encoded


BODIES = {
    "JSON labelled a form (curl -d)": json.dumps({"batch": [EVENT]}),
    "data=<JSON>, percent-encoded": urllib.parse.urlencode({"data": json.dumps([EVENT])}),
    "data=<base64> with a bare +": "data=" + as_base64([EVENT]),
}


@pytest.mark.parametrize("name", BODIES)
def test_a_form_or_json_body_lands_in_the_buffer(daemon: DaemonProcess, name: str) -> None:
    request = urllib.request.Request(
        daemon.http_url() + "/batch/",
        data=BODIES[name].encode(),
        headers={"Content-Type": FORM},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, answer = error.code, json.loads(error.read())
    assert (status, answer) == (200, {"status": 1})
    [stored] = [row for row in daemon.export() if row["event"] == "form.case"]
    assert stored["properties"]["arrows"] == ">>>?>>>"
