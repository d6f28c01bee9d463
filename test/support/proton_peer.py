"""A python3-qpid-proton client (a peer hermod did not write) exercising hermod's router.

Prints one JSON object with what it saw; the TypeScript test asserts on it. Usage:
    proton_peer.py <port> [user password]
"""
import json
import sys

from proton import Message
from proton.reactor import AtMostOnce
from proton import Timeout
from proton.utils import BlockingConnection, SendException

port = int(sys.argv[1])
kwargs = {}
if len(sys.argv) > 3:
    kwargs = {"user": sys.argv[2], "password": sys.argv[3], "allowed_mechs": "PLAIN"}
out = {}
conn = BlockingConnection(f"amqp://127.0.0.1:{port}", timeout=5, **kwargs)
try:
    # Anycast: settled end to end, properties and types kept.
    addr = "openstack.org/om/rpc/anycast/openstack/proton"
    rcv = conn.create_receiver(addr, credit=10)
    snd = conn.create_sender(addr)
    # The outcome travels back from the receiver, so send without blocking, then receive.
    conn.wait(lambda: snd.link.credit > 0, timeout=5)
    sent = [snd.link.send(Message(body={"seq": i}, subject="s", correlation_id=f"c{i}",
                                  properties={"n": i, "f": 1.5, "b": True})) for i in range(5)]
    got = []
    for _ in range(5):
        m = rcv.receive(timeout=5)
        got.append({"body": m.body, "subject": m.subject, "cid": m.correlation_id, "props": m.properties})
        rcv.accept()
    conn.wait(lambda: all(d.settled for d in sent), timeout=5)
    out["anycast"] = got

    # No receiver: the router grants no credit, so a send cannot even start (Dispatch semantics).
    lonely = conn.create_sender("openstack.org/om/rpc/anycast/openstack/nobody")
    try:
        lonely.send(Message(body="x"), timeout=0.5)
        out["no_receiver"] = "sent"
    except Timeout:
        out["no_receiver"] = "no credit"
    except SendException as e:
        out["no_receiver"] = f"send failed: {e.state}"
    # Not closed: proton holds the link's detach behind the message it could never send.

    # Outcomes travel back: the test's own (rhea) receivers accept on one address and reject on
    # another; a blocking send returns on accepted and raises on rejected.
    outcomes = {}
    for name in ("accepting", "rejecting"):
        try:
            conn.create_sender(f"openstack.org/om/rpc/anycast/openstack/{name}").send(Message(body=name), timeout=5)
            outcomes[name] = "ACCEPTED"
        except SendException as e:
            outcomes[name] = str(e.state)
    out["outcomes"] = outcomes

    # Multicast, presettled: both receivers get a presettled copy.
    maddr = "openstack.org/om/rpc/multicast/openstack/proton"
    m1 = conn.create_receiver(maddr, credit=10, name="fan-1")
    m2 = conn.create_receiver(maddr, credit=10, name="fan-2")
    msnd = conn.create_sender(maddr, options=AtMostOnce())
    conn.wait(lambda: msnd.link.credit > 0, timeout=5)
    msnd.send(Message(body="fan"))
    copies = []
    for r in (m1, m2):
        m = r.receive(timeout=5)
        # The fetcher keeps only unsettled deliveries for accept(): none means it came presettled.
        presettled = len(r.fetcher.unsettled) == 0
        copies.append({"body": m.body, "presettled": presettled})
        if not presettled:
            r.accept()
    out["multicast"] = copies

    # Dynamic source: a unique address, usable as a reply-to.
    dyn = conn.create_receiver(None, dynamic=True, credit=5)
    reply_to = dyn.remote_source.address
    rs = conn.create_sender(None)
    conn.wait(lambda: rs.link.credit > 0, timeout=5)
    rd = rs.link.send(Message(address=reply_to, body="reply"))
    out["dynamic"] = {"address": reply_to, "body": dyn.receive(timeout=5).body}
    dyn.accept()
    conn.wait(lambda: rd.settled, timeout=5)
finally:
    conn.close()
print(json.dumps(out))
