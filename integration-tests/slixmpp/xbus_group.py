#!/usr/bin/env python3
"""A consumer-group member in slixmpp, written from docs/PROTOCOL.md section 10.

It joins a group as a worker that never leads (`lead='false'`, section 10
"Foreign members"): it takes jobs from whichever xbus instance leads, acks
or naks them, follows a new leader's claim when the old one dies, and tells
the new leader what it settled lately, so that nothing it acked is handed
out again. The XMPP plumbing and the payload codec come from xbus_peer.py.

Input: one JSON job on stdin (or argv[1]): the login fields of xbus_peer.py
(host, port, jid with the resource to bind, password, tls, ca_file, pubsub,
timeout) and

    {"group": "billing", "topic": "fault.job",
     "nak": [seq, ...],      # nak these on their first attempt
     "nak_delay_ms": 100,    # the delay-ms of those naks
     "term": [seq, ...],     # term these
     "work_ms": 0,           # time spent on each job before answering
     "max_s": 120}           # the whole run; SIGTERM also ends it

Output: JSON lines, each with "kind": ready; claim (leader, epoch, outcome
followed|refused); job (seq, item, attempt, leader, epoch); acked, naked,
termed (seq, item); stale (leader, epoch: a job refused); settled (to,
items: a report sent); done. On failure {"kind": "failed", "reason": ...}
and exit status 1.
"""

import asyncio
import signal
import sys
import time
import xml.etree.ElementTree as ET
from collections import deque

from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from xbus_peer import CLIENT, NS, STANZAS, Failed, Peer, emit, read_body, run_main

GROUP = "urn:xbus:group:0"
# Section 10: a member reports what it acked or termed in the last 30 s,
# the newest 4,096 at most, in reports of at most 1,024 items.
REPORT_WINDOW_S = 30.0
REPORT_MAX = 4096
REPORT_CHUNK = 1024


def bare(jid):
    return jid.split("/", 1)[0]


class Member(Peer):
    def __init__(self, job):
        super().__init__(job)
        self.register_plugin("xep_0199")  # section 6.1: answer pings
        self.group = job["group"]
        self.topic = job["topic"]
        self.nak = set(job.get("nak", []))
        self.nak_delay_ms = int(job.get("nak_delay_ms", 100))
        self.term = set(job.get("term", []))
        self.work_s = float(job.get("work_ms", 0)) / 1000
        # The claim followed: (epoch, leader full JID), or None.
        self.followed = None
        # (item id, monotonic time) of what we acked or termed, newest last.
        self.recent = deque()
        self.tasks = set()
        for name in ("claim", "job"):
            self.register_handler(Callback(
                f"xbus group {name}", MatchXPath(f"{{{CLIENT}}}iq/{{{GROUP}}}{name}"),
                getattr(self, f"_on_{name}")))

    # --- section 10: membership ---

    def announce(self):
        """Section 6's instance presence, plus one <group/> that never leads."""
        presence = self.instance_presence("ready")
        ET.SubElement(presence.xml, f"{{{GROUP}}}group",
                      {"name": self.group, "topic": self.topic, "lead": "false"})
        presence.send()

    # --- section 10: who leads (the fence) ---

    def newer(self, epoch, leader):
        """Whether the claim (epoch, leader) is newer than the one followed:
        a higher epoch, or at equal epochs the lower leader JID."""
        if self.followed is None:
            return True
        followed_epoch, followed_leader = self.followed
        return epoch > followed_epoch or (
            epoch == followed_epoch and leader.encode() < followed_leader.encode())

    def stale_epoch(self, iq):
        epoch = self.followed[0] if self.followed else 0
        self.reply_error(iq, "cancel", "conflict", None,
                         ET.Element(f"{{{GROUP}}}stale-epoch", {"epoch": str(epoch)}))

    def reply_error(self, iq, kind, condition, text, child=None):
        reply = iq.reply(clear=True)
        reply["type"] = "error"
        err = ET.SubElement(reply.xml, f"{{{CLIENT}}}error", {"type": kind})
        ET.SubElement(err, f"{{{STANZAS}}}{condition}")
        if text:
            ET.SubElement(err, f"{{{STANZAS}}}text").text = text
        if child is not None:
            err.append(child)
        reply.send()

    def spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- section 10: the settled report ---

    def recently_settled(self):
        cutoff = time.monotonic() - REPORT_WINDOW_S
        while self.recent and self.recent[0][1] < cutoff:
            self.recent.popleft()
        return [item for item, _ in self.recent][-REPORT_MAX:]

    async def report(self, leader, items):
        """<settled/> to `leader`, in chunks; failures are not fatal (the
        leader may be gone too)."""
        for start in range(0, len(items), REPORT_CHUNK):
            settled = ET.Element(f"{{{GROUP}}}settled", {"group": self.group, "topic": self.topic})
            for item in items[start:start + REPORT_CHUNK]:
                ET.SubElement(settled, f"{{{GROUP}}}item", {"id": item})
            try:
                await self.iq_set(leader, settled)
            except (IqError, Failed) as err:
                emit("report-failed", to=leader, reason=str(err))
                return
            emit("settled", to=leader, items=len(items[start:start + REPORT_CHUNK]))

    def from_our_group(self, iq, name):
        """The <claim/> or <job/> element, its sender and epoch; None (and
        `forbidden` answered) unless a session of our account sent it for
        our group."""
        elem = iq.xml.find(f"{{{GROUP}}}{name}")
        sender = iq.xml.get("from", "")
        if bare(sender) != bare(self.boundjid.full) or elem.get("group") != self.group:
            self.reply_error(iq, "auth", "forbidden", "not a member of this account's group")
            return None
        return elem, sender, int(elem.get("epoch", "0"))

    # --- section 10: claims ---

    def _on_claim(self, iq):
        checked = self.from_our_group(iq, "claim")
        if checked is None:
            return
        _, leader, epoch = checked
        if not (self.newer(epoch, leader) or self.followed == (epoch, leader)):
            emit("claim", leader=leader, epoch=epoch, outcome="refused")
            self.stale_epoch(iq)
            return
        self.followed = (epoch, leader)
        emit("claim", leader=leader, epoch=epoch, outcome="followed")

        async def answer():
            # What we settled lately goes to the claimer before the result.
            items = self.recently_settled()
            if items:
                await self.report(leader, items)
            iq.reply(clear=True).send()

        self.spawn(answer())

    # --- section 10: jobs ---

    def _on_job(self, iq):
        checked = self.from_our_group(iq, "job")
        if checked is None:
            return
        job, leader, epoch = checked
        if self.followed != (epoch, leader):
            if not self.newer(epoch, leader):
                emit("stale", leader=leader, epoch=epoch)
                self.stale_epoch(iq)
                return
            # A leader whose claim we did not see: follow it, and tell it
            # what we settled lately.
            self.followed = (epoch, leader)
            items = self.recently_settled()
            if items:
                self.spawn(self.report(leader, items))
        self.spawn(self.work(iq, job, leader, epoch))

    async def work(self, iq, job, leader, epoch):
        item = job.get("item")
        attempt = int(job.get("attempt", "1"))
        payload = job.find(f"{{{NS}}}payload")
        try:
            seq = read_body(payload)["value"]["seq"]
        except Exception as err:  # noqa: BLE001 - a job we cannot read is termed
            self.reply_error(iq, "cancel", "undefined-condition", f"unreadable job: {err}",
                             ET.Element(f"{{{GROUP}}}term"))
            return
        emit("job", seq=seq, item=item, attempt=attempt, leader=leader, epoch=epoch)
        if self.work_s:
            await asyncio.sleep(self.work_s)
        if seq in self.nak and attempt == 1:
            self.reply_error(iq, "wait", "undefined-condition", "not yet",
                             ET.Element(f"{{{GROUP}}}nak", {"delay-ms": str(self.nak_delay_ms)}))
            emit("naked", seq=seq, item=item)
            return
        if seq in self.term:
            self.reply_error(iq, "cancel", "undefined-condition", "never",
                             ET.Element(f"{{{GROUP}}}term"))
            outcome = "termed"
        else:
            iq.reply(clear=True).send()  # ack
            outcome = "acked"
        self.recent.append((item, time.monotonic()))
        while len(self.recent) > REPORT_MAX:
            self.recent.popleft()
        emit(outcome, seq=seq, item=item)
        # Settled for an older leader while we follow a newer one: the new
        # one hears of it too (the old one may never save it).
        if self.followed is not None and self.followed[1] != leader:
            await self.report(self.followed[1], [item])


async def run(job):
    member = Member(job)
    member.connect(job["host"], int(job["port"]))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await member.within(f"login as {job['jid']}", member.started)
        # Section 7: initial presence is the instance's, with the group.
        member.announce()
        emit("ready", jid=member.boundjid.full)
        try:
            await asyncio.wait_for(stop.wait(), float(job.get("max_s", 120)))
        except asyncio.TimeoutError:
            pass
        member.send_presence(ptype="unavailable")
        emit("done", scenario="group")
    finally:
        if member.started.done() and member.started.exception() is None:
            member.disconnect(wait=2.0)
            try:
                await asyncio.wait_for(member.disconnected, 3)
            except Exception:  # noqa: BLE001 - leaving anyway
                pass
        else:
            member.abort()


def main():
    return run_main("xbus_group", run)


if __name__ == "__main__":
    sys.exit(main())
