#!/usr/bin/env python3
"""A third-party xbus peer: slixmpp, written from docs/PROTOCOL.md alone.

Every stanza that carries xbus data is built and read here with
ElementTree, from the document's description (sections in the comments), not
from xbus's source. slixmpp only does the XMPP plumbing (TCP, STARTTLS,
SASL, resource binding, IQ ids, roster).

Input: one JSON job, as argv[1] or on stdin:

    {"host": "127.0.0.1", "port": 5222, "jid": "u3@localhost", "password": "...",
     "tls": "plaintext" | "starttls", "ca_file": "/path/ca.pem",   # starttls only
     "pubsub": "pubsub.localhost",       # default: pubsub.<domain>
     "timeout": 10,                      # seconds, for each single wait
     "scenario": "publish" | "receive" | "call" | "serve", ...scenario fields}

Scenarios (fields):
  probe    topic?: prints the <stream:features/> the server sent ("features"
           lines), then, with `topic` (a node that must not exist yet),
           subscribes before creating it ("missing_node": the error), then
           creates (3.1), subscribes and unsubscribes (3.3) as section 9 says.
  publish  items: [{topic, encoding, version, event, headers?: {k: v}, wrap_base64?,
                   unpadded_base64?, payload_topic?}]
           creates each node before its first item (section 3.1), publishes
           one item per entry (3.2); `payload_topic` puts another topic than
           the node in the payload (a receiver reports it as an error, 2).
  receive  topics: [..], count
           initial presence, creates and subscribes each topic with the full
           JID (3.3), then prints `count` events from pubsub notifications
           (3.4) or direct <message/>s (4), then unsubscribes.
  call     service (bare JID, instance found by presence, section 6) or to
           (full JID); calls: [{method, encoding, version, timeout_ms?, request}]
           sends each <request/> (5) and prints the <response/> or the error
           (5.1).
  serve    methods: {name: {encoding, version}}, calls: N, presence?: "full"
           announces an instance (6) with <instance/> alone (or, "full",
           with <status/> and <priority/> too), answers N calls (5) with the built-in
           handler `sum` (request {"values": [ints]} -> {"sum", "count",
           "caller"}; empty values -> application error code "empty"), then
           goes offline.

Output: JSON lines on stdout, each with "kind": ready, node, published,
subscribed, event, instance, response, error, served, features, missing_node,
done; on failure a
line {"kind": "failed", "reason": ...}, the reason on stderr, exit status 1.
Every wait is bounded by "timeout"; the whole run by 6 times that.
"""

import asyncio
import base64
import binascii
import json
import logging
import os
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import msgpack
import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS = "urn:xbus:0"
CLIENT = "jabber:client"
PUBSUB = "http://jabber.org/protocol/pubsub"
PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
DATA_FORMS = "jabber:x:data"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
SHIM = "http://jabber.org/protocol/shim"
STREAMS = "http://etherx.jabber.org/streams"


class Failed(Exception):
    """A step of the scenario did not go as the protocol says."""


def emit(kind, **fields):
    print(json.dumps({"kind": kind, **fields}, sort_keys=True, default=repr), flush=True)


# --- Section 2: the payload element (and section 5's request/response) ---

def serialize(value, encoding):
    if encoding == "msgpack":
        return msgpack.packb(value)
    if encoding == "json":
        return json.dumps(value, separators=(",", ":")).encode("utf-8")
    raise Failed(f"unknown encoding {encoding!r}")


def deserialize(data, encoding):
    if encoding == "msgpack":
        return msgpack.unpackb(data, raw=False)
    if encoding == "json":
        return json.loads(data.decode("utf-8"))
    raise Failed(f"unknown encoding {encoding!r}")


def body_element(name, attrs, encoding, version, value, headers=None, wrap=False, pad=True):
    """<name xmlns='urn:xbus:0' ... encoding=.. version=..>BASE64[<headers/>]</name>

    With `wrap`, the base64 is laid out as in section 2's example: on lines
    of 76 characters, indented, between newlines (receivers ignore ASCII
    whitespace). Without `pad`, the trailing `=` are left out (senders pad;
    receivers accept it without, section 2)."""
    elem = ET.Element(f"{{{NS}}}{name}", {**attrs, "encoding": encoding, "version": str(version)})
    text = base64.b64encode(serialize(value, encoding)).decode("ascii")
    if not pad:
        text = text.rstrip("=")
    if wrap:
        text = "".join(f"\n  {text[i:i + 76]}" for i in range(0, len(text), 76)) + "\n"
    elem.text = text
    if headers:
        shim = ET.SubElement(elem, f"{{{SHIM}}}headers")
        for key, val in headers.items():
            ET.SubElement(shim, f"{{{SHIM}}}header", {"name": key}).text = val
    return elem


def read_body(elem):
    """The attributes, decoded value and headers of a payload-like element."""
    encoding = elem.get("encoding")
    version = elem.get("version")
    if encoding is None or version is None:
        raise Failed(f"<{elem.tag}> lacks encoding or version: {ET.tostring(elem)!r}")
    text = "".join((elem.text or "").split())  # ASCII whitespace is ignored
    text += "=" * (-len(text) % 4)  # padding may be left out (section 2)
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as err:
        raise Failed(f"bad base64 in <{elem.tag}>: {err}") from err
    headers = {}
    shim = elem.find(f"{{{SHIM}}}headers")
    if shim is not None:
        for header in shim.findall(f"{{{SHIM}}}header"):
            headers[header.get("name")] = header.text or ""
    return {
        "encoding": encoding,
        "version": int(version),
        "value": deserialize(data, encoding),
        "headers": headers,
    }


def stanza_error(error_elem):
    """Section 5.1 / 8: type, defined condition, text, xbus element."""
    out = {"type": error_elem.get("type"), "condition": None, "text": None,
           "failure_code": None, "unknown_method": None}
    for child in error_elem:
        if child.tag == f"{{{STANZAS}}}text":
            out["text"] = child.text
        elif child.tag.startswith(f"{{{STANZAS}}}"):
            out["condition"] = child.tag.split("}", 1)[1]
        elif child.tag == f"{{{NS}}}failure":
            out["failure_code"] = child.get("code")
        elif child.tag == f"{{{NS}}}unknown-method":
            out["unknown_method"] = child.get("method")
    return out


class Peer(slixmpp.ClientXMPP):
    def __init__(self, job):
        # Connecting (PROTOCOL.md section 1.1): TCP to the c2s port, then
        # either STARTTLS verified against the server's CA, or plaintext on
        # loopback, where SASL PLAIN in the clear must be allowed explicitly.
        super().__init__(job["jid"], job["password"], plugin_config={
            "feature_mechanisms": {"unencrypted_plain": job.get("tls") == "plaintext"},
        })
        self.job = job
        self.wait = float(job.get("timeout", 10))
        self.enable_direct_tls = False  # no XEP-0368 direct TLS port
        if job.get("tls", "starttls") == "plaintext":
            self.enable_starttls = False
            self.enable_plaintext = True
        else:
            self.enable_starttls = True
            self.enable_plaintext = False
            if job.get("ca_file"):
                self.ca_certs = Path(job["ca_file"])
        self.offered = []  # every <stream:features/>, as XML text, in order
        self.register_handler(Callback(
            "features log", MatchXPath(f"{{{STREAMS}}}features"),
            lambda stanza: self.offered.append(ET.tostring(stanza.xml, encoding="unicode"))))
        self.domain = self.boundjid.domain
        self.pubsub = job.get("pubsub") or f"pubsub.{self.domain}"
        self.started = asyncio.get_running_loop().create_future()
        self.inbox = asyncio.Queue()       # decoded events (pubsub and direct)
        self.presences = asyncio.Queue()   # (from, type, <instance/> status or None)
        self.requests = asyncio.Queue()    # calls answered while serving
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.register_handler(Callback(
            "xbus message", MatchXPath(f"{{{CLIENT}}}message"), self._on_message))
        self.register_handler(Callback(
            "xbus presence", MatchXPath(f"{{{CLIENT}}}presence"), self._on_presence))
        self.register_handler(Callback(
            "xbus request", MatchXPath(f"{{{CLIENT}}}iq/{{{NS}}}request"), self._on_request))

    # --- plumbing ---

    def _on_session_start(self, _event):
        if not self.started.done():
            self.started.set_result(None)

    def _on_failed_auth(self, _event):
        if not self.started.done():
            self.started.set_exception(Failed(f"authentication failed for {self.job['jid']}"))

    def _on_connection_failed(self, error):
        if not self.started.done():
            self.started.set_exception(Failed(f"connection failed: {error}"))

    async def within(self, what, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.wait)
        except asyncio.TimeoutError:
            raise Failed(f"timed out after {self.wait}s: {what}") from None

    async def iq_set(self, to, child, timeout=None):
        """Sends <iq type='set' to=..> with `child`; returns the result's XML."""
        iq = self.Iq()
        iq["type"] = "set"
        iq["to"] = to
        iq.xml.append(child)
        try:
            result = await iq.send(timeout=timeout or self.wait)
        except IqTimeout:
            raise Failed(f"no answer within {timeout or self.wait}s to an IQ to {to}") from None
        return result.xml

    async def pubsub_set(self, child):
        pubsub = ET.Element(f"{{{PUBSUB}}}pubsub")
        pubsub.append(child)
        return await self.iq_set(self.pubsub, pubsub)

    # --- section 3: topics ---

    async def create_node(self, topic):
        """Section 3.1; conflict (exists) and any other refusal are fine."""
        create = ET.Element(f"{{{PUBSUB}}}create", {"node": topic})
        pubsub = ET.Element(f"{{{PUBSUB}}}pubsub")
        pubsub.append(create)
        configure = ET.SubElement(pubsub, f"{{{PUBSUB}}}configure")
        form = ET.SubElement(configure, f"{{{DATA_FORMS}}}x", {"type": "submit"})
        for var, value in [("FORM_TYPE", "http://jabber.org/protocol/pubsub#node_config"),
                           ("pubsub#persist_items", "1"),
                           ("pubsub#max_items", "1000")]:
            field = ET.SubElement(form, f"{{{DATA_FORMS}}}field", {"var": var})
            ET.SubElement(field, f"{{{DATA_FORMS}}}value").text = value
        try:
            await self.iq_set(self.pubsub, pubsub)
            outcome = "created"
        except IqError as err:
            outcome = stanza_error(err.iq.xml.find(f"{{{CLIENT}}}error"))["condition"]
        emit("node", topic=topic, outcome=outcome)

    async def publish(self, topic, spec):
        """Section 3.2: one item, our own item id, the payload as only child."""
        item_id = uuid.uuid4().hex
        publish = ET.Element(f"{{{PUBSUB}}}publish", {"node": topic})
        item = ET.SubElement(publish, f"{{{PUBSUB}}}item", {"id": item_id})
        # `payload_topic` writes another topic than the node into the
        # payload: a receiver reports such an item as an error (section 2).
        item.append(body_element("payload", {"topic": spec.get("payload_topic", topic)},
                                 spec["encoding"], spec.get("version", 1), spec["event"],
                                 spec.get("headers"), wrap=spec.get("wrap_base64", False),
                                 pad=not spec.get("unpadded_base64", False)))
        try:
            result = await self.pubsub_set(publish)
        except IqError as err:
            raise Failed(f"publish to {topic} refused: "
                         f"{stanza_error(err.iq.xml.find(f'{{{CLIENT}}}error'))}") from None
        acked = result.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish/{{{PUBSUB}}}item")
        emit("published", topic=topic, item_id=item_id, encoding=spec["encoding"],
             version=spec.get("version", 1),
             acked_item_id=acked.get("id") if acked is not None else None)

    async def subscribe(self, topic, unsubscribe=False):
        """Section 3.3, with the session's full JID."""
        verb = "unsubscribe" if unsubscribe else "subscribe"
        request = ET.Element(f"{{{PUBSUB}}}{verb}", {"node": topic, "jid": self.boundjid.full})
        try:
            result = await self.pubsub_set(request)
        except IqError as err:
            raise Failed(f"{verb} {topic} refused: "
                         f"{stanza_error(err.iq.xml.find(f'{{{CLIENT}}}error'))}") from None
        sub = result.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}subscription")
        emit(f"{verb}d", topic=topic, jid=self.boundjid.full,
             subscription=sub.get("subscription") if sub is not None else None)

    def _on_message(self, msg):
        xml = msg.xml
        sender = xml.get("from", "")
        if sender == self.pubsub:
            # Section 3.4 / 9: event/items[@node]/item/payload.
            for items in xml.findall(f"{{{PUBSUB_EVENT}}}event/{{{PUBSUB_EVENT}}}items"):
                for item in items.findall(f"{{{PUBSUB_EVENT}}}item"):
                    payload = item.find(f"{{{NS}}}payload")
                    if payload is None:
                        self.inbox.put_nowait(Failed(f"item without payload: {ET.tostring(item)!r}"))
                        continue
                    if payload.get("topic") != items.get("node"):
                        # Section 2: an item's payload names its node.
                        self.inbox.put_nowait(Failed(
                            f"payload topic {payload.get('topic')!r} on node {items.get('node')!r}"))
                        continue
                    self._deliver(payload, via="pubsub", sender=sender, node=items.get("node"),
                                  item_id=item.get("id"), publisher=item.get("publisher"),
                                  message_type=xml.get("type"))
            return
        payload = xml.find(f"{{{NS}}}payload")
        if payload is not None:
            # Section 4: a direct event; `from` is the sender's full JID.
            self._deliver(payload, via="message", sender=sender, node=None, item_id=None,
                          publisher=sender, message_type=xml.get("type", "normal"))

    def _deliver(self, payload, *, via, sender, node, item_id, publisher, message_type):
        try:
            body = read_body(payload)
        except Exception as err:  # reported, not fatal to the stream
            self.inbox.put_nowait(Failed(f"undecodable payload ({err}): {ET.tostring(payload)!r}"))
            return
        self.inbox.put_nowait({
            "via": via, "from": sender, "message_type": message_type, "node": node,
            "topic": payload.get("topic"), "item_id": item_id, "publisher": publisher,
            "encoding": body["encoding"], "version": body["version"],
            "event": body["value"], "headers": body["headers"],
        })

    # --- section 6: presence ---

    def instance_presence(self, status, minimal=False):
        """Section 6; with `minimal`, only the required <instance/>."""
        presence = self.Presence()
        if not minimal:
            ET.SubElement(presence.xml, f"{{{CLIENT}}}status").text = status
            ET.SubElement(presence.xml, f"{{{CLIENT}}}priority").text = "0"
        ET.SubElement(presence.xml, f"{{{NS}}}instance", {"status": status})
        return presence

    def _on_presence(self, presence):
        xml = presence.xml
        instance = xml.find(f"{{{NS}}}instance")
        self.presences.put_nowait((xml.get("from", ""), xml.get("type", "available"),
                                   instance.get("status") if instance is not None else None))

    async def find_instance(self, service):
        """Subscribes to the service's presence; returns a ready instance's full JID."""
        self.send_presence(pto=service, ptype="subscribe")

        async def first_ready():
            while True:
                sender, ptype, status = await self.presences.get()
                if sender.split("/")[0] != service or "/" not in sender:
                    if sender.split("/")[0] == service and ptype == "unsubscribed":
                        raise Failed(f"{service} refused the presence subscription")
                    continue
                if ptype == "available" and status is not None and status != "draining":
                    return sender, status

        jid, status = await self.within(f"a ready instance of {service}", first_ready())
        emit("instance", jid=jid, status=status)
        return jid

    # --- section 5: calls ---

    async def call(self, to, spec):
        attrs = {"method": spec["method"]}
        if spec.get("timeout_ms"):
            attrs["timeout"] = str(spec["timeout_ms"])
        request = body_element("request", attrs, spec["encoding"], spec.get("version", 1),
                               spec["request"], spec.get("headers"))
        try:
            result = await self.iq_set(to, request, timeout=spec.get("timeout_ms", 0) / 1000 or None)
        except IqError as err:
            emit("error", method=spec["method"], to=to,
                 **stanza_error(err.iq.xml.find(f"{{{CLIENT}}}error")))
            return
        response = result.find(f"{{{NS}}}response")
        if response is None:
            raise Failed(f"result without <response/>: {ET.tostring(result)!r}")
        body = read_body(response)
        emit("response", method=response.get("method"), to=to, encoding=body["encoding"],
             version=body["version"], response=body["value"])

    def _on_request(self, iq):
        """Serves section 5: answers <request/> with <response/> or an error."""
        xml = iq.xml
        request = xml.find(f"{{{NS}}}request")
        method = request.get("method")
        caller = xml.get("from")

        def error(kind, condition, text, xbus_child=None):
            reply = iq.reply(clear=True)
            reply["type"] = "error"
            err = ET.SubElement(reply.xml, f"{{{CLIENT}}}error", {"type": kind})
            ET.SubElement(err, f"{{{STANZAS}}}{condition}")
            ET.SubElement(err, f"{{{STANZAS}}}text").text = text
            if xbus_child is not None:
                err.append(xbus_child)
            reply.send()

        spec = self.job.get("methods", {}).get(method)
        if spec is None:
            error("cancel", "feature-not-implemented", f"no handler for method {method!r}",
                  ET.Element(f"{{{NS}}}unknown-method", {"method": method or ""}))
            self.requests.put_nowait({"method": method, "from": caller,
                                      "outcome": "unknown-method"})
            return
        try:
            body = read_body(request)
            if body["encoding"] != spec["encoding"] or body["version"] != spec.get("version", 1):
                raise Failed(f"expected {spec['encoding']} version {spec.get('version', 1)}, "
                             f"got {body['encoding']} version {body['version']}")
            values = [int(v) for v in body["value"]["values"]]
        except Exception as err:
            error("modify", "bad-request", f"malformed request: {err}")
            self.requests.put_nowait({"method": method, "from": caller, "outcome": "bad-request"})
            return
        timeout = request.get("timeout")
        if not values:
            error("cancel", "undefined-condition", "nothing to add",
                  ET.Element(f"{{{NS}}}failure", {"code": "empty"}))
            outcome = "failure"
        else:
            reply = iq.reply(clear=True)
            reply.xml.append(body_element(
                "response", {"method": method}, body["encoding"], body["version"],
                {"sum": sum(values), "count": len(values), "caller": caller}))
            reply.send()
            outcome = "response"
        self.requests.put_nowait({"method": method, "from": caller, "outcome": outcome,
                                  "request": body["value"], "headers": body["headers"],
                                  "timeout": timeout})


async def run(job):
    peer = Peer(job)
    scenario = job["scenario"]
    peer.connect(job["host"], int(job["port"]))
    try:
        await peer.within(f"login as {job['jid']} at {job['host']}:{job['port']}", peer.started)
        if scenario == "serve":
            # xbus callers find instances through a presence subscription
            # (section 6): approve every request (slixmpp answers `subscribe`
            # with `subscribed`), do not subscribe back. Not approving makes
            # xbus callers fail with NoResponder ("refused the presence
            # subscription", or "not approved yet" after the discovery
            # timeout). Fetching the roster first makes this resource an
            # "interested resource" (RFC 6121 section 3.1.3).
            peer.roster.auto_authorize = True
            peer.roster.auto_subscribe = False
            await peer.within("roster", peer.get_roster())
            # Only <instance/> is required (section 6); "presence": "full"
            # adds <status/> and <priority/>.
            peer.instance_presence("ready", minimal=job.get("presence") != "full").send()
            emit("ready", jid=peer.boundjid.full)
            for _ in range(int(job["calls"])):
                served = await peer.within("the next call", peer.requests.get())
                emit("served", **served)
            peer.send_presence(ptype="unavailable")
        elif scenario == "publish":
            peer.send_presence()
            created = set()
            for spec in job["items"]:
                if spec["topic"] not in created:
                    await peer.create_node(spec["topic"])
                    created.add(spec["topic"])
                await peer.publish(spec["topic"], spec)
        elif scenario == "receive":
            peer.send_presence()  # without it, nothing sent to the bare JID arrives
            for topic in job.get("topics", []):
                await peer.create_node(topic)
                await peer.subscribe(topic)
            emit("ready", jid=peer.boundjid.full)
            for _ in range(int(job["count"])):
                got = await peer.within("the next event", peer.inbox.get())
                if isinstance(got, Exception):
                    raise got
                emit("event", **got)
            for topic in job.get("topics", []):
                await peer.subscribe(topic, unsubscribe=True)
        elif scenario == "probe":
            # What a new client meets (sections 1.1 and 9): the stream
            # features the server offered, and, with `topic` (a node that
            # does not exist), the answer to subscribing before creating.
            peer.send_presence()
            for xml in peer.offered:
                emit("features", xml=xml)
            if job.get("topic"):
                topic = job["topic"]
                request = ET.Element(f"{{{PUBSUB}}}subscribe",
                                     {"node": topic, "jid": peer.boundjid.full})
                try:
                    await peer.pubsub_set(request)
                    emit("missing_node", topic=topic, condition=None)
                except IqError as err:
                    emit("missing_node", topic=topic,
                         **stanza_error(err.iq.xml.find(f"{{{CLIENT}}}error")))
                await peer.create_node(topic)
                await peer.subscribe(topic)
                await peer.subscribe(topic, unsubscribe=True)
        elif scenario == "call":
            # Roster first, then initial presence, as section 9 says.
            await peer.within("roster", peer.get_roster())
            peer.send_presence()
            to = job.get("to") or await peer.find_instance(job["service"])
            for spec in job["calls"]:
                await peer.call(to, spec)
        else:
            raise Failed(f"unknown scenario {scenario!r}")
        emit("done", scenario=scenario)
    finally:
        started = peer.started
        if started.done() and not started.cancelled() and started.exception() is None:
            peer.disconnect(wait=2.0)
            try:
                await asyncio.wait_for(peer.disconnected, 3)
            except Exception:  # noqa: BLE001 - leaving anyway
                pass
        else:
            peer.cancel_connection_attempt()
            peer.abort()


def run_main(name, scenario):
    """The scripts' entry point: reads the JSON job (argv[1] or stdin),
    runs `scenario(job)` (a coroutine), and turns any failure into a
    {"kind": "failed"} line, the reason on stderr and exit status 1.
    XBUS_PEER_XML_LOG=FILE logs every stanza sent and received (slixmpp's
    SEND:/RECV: lines), for the captures in docs/PROTOCOL.md."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if os.environ.get("XBUS_PEER_XML_LOG"):
        wire = logging.FileHandler(os.environ["XBUS_PEER_XML_LOG"])
        wire.setLevel(logging.DEBUG)
        stream_log = logging.getLogger("slixmpp.xmlstream.xmlstream")
        stream_log.setLevel(logging.DEBUG)
        stream_log.addHandler(wire)
    raw = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
    try:
        asyncio.run(scenario(json.loads(raw)))
    except Failed as err:
        reason = str(err)
    except asyncio.TimeoutError:
        reason = "the whole scenario timed out"
    except Exception as err:  # noqa: BLE001 - any failure must be a clear exit 1
        reason = f"{type(err).__name__}: {err}"
    else:
        return 0
    emit("failed", reason=reason)
    print(f"{name}: {reason}", file=sys.stderr)
    return 1


def main():
    # Every wait is bounded by the job's "timeout"; the whole run by 6 times that.
    return run_main("xbus_peer", lambda job: asyncio.wait_for(
        run(job), 6 * float(job.get("timeout", 10))))


if __name__ == "__main__":
    sys.exit(main())
