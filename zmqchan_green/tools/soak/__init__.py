"""``python -m zmqchan_green soak``: a bounded soak under injected faults.

Theory of operation
===================

Greenlets and native threads move messages through six *lanes* (DEALER ->
ROUTER, echoed back, and PUSH -> PULL, over tcp and inproc) for a set time,
while a fault injector kills senders and receivers, times out sends and
receives, stalls receivers, closes and replaces sending pairs, restarts
peers, has peers reconnect mid-message (so libzmq rolls messages back) and
puts a peer that stops reading on a ROUTER (so the pair parks its messages,
while the lane's own peer must still be served at once). Every attempt is
recorded as it happens; at the end, after the senders stopped, the receivers
drained and every pair was closed and swept, every accepted message must have
been delivered exactly once and whole (in order where order is defined),
returned by ``close()`` or reported on ``errors``; the only loss
allowed is what libzmq may drop at a fault of a kind that drops, bounded by
what its queues hold, and it is stated. A watchdog thread makes sure the run
ends instead of hanging.

Each part has its own module, and its own part of the theory:

* :mod:`.lanes`: the lanes and their topology (sockets, binding, replacement);
* :mod:`.messages`: the message format and the seeded payloads;
* :mod:`.ledger`: the bookkeeping of every attempt, and the live checks
  (checksums, duplicates, order);
* :mod:`.workers`: the sending and receiving greenlets, the echo consumer and
  the native threads, with their deadlines;
* :mod:`.faults`: the fault injector;
* :mod:`.churn`: the peer that reconnects mid-message (``peer_churn``);
* :mod:`.stall`: the ROUTER peer that stops reading (``router_peer_stall``),
  and the account of its replies;
* :mod:`.losses`: which faults may make libzmq drop messages, and how many;
* :mod:`.accounting`: the final accounting and the invariants;
* :mod:`.report`: the JSON document and the summary;
* :mod:`.driver`: the run, phase by phase (:class:`~.driver.Soak`);
* :mod:`.watchdog`: progress lines, and an abort rather than a hang;
* :mod:`.command`: the command line and :func:`run_soak`.
"""

from __future__ import annotations

from .command import add_soak_command, run_soak
from .lanes import LANES, LaneSpec, SoakConfig

__all__ = ["LANES", "LaneSpec", "SoakConfig", "add_soak_command", "run_soak"]
