"""A node's receipts, written to the database every KPNS_RECEIPT_FLUSH_SECONDS.

Sessions append to the node's buffer (devices.delivery.receipts.Receipts)
without any I/O; the writer swaps it for an empty one and writes the batch
in one transaction on a thread of its own. A batch that fails is merged
back and written with the next (docs/guarantees.md, point 8).
"""

import asyncio
import logging
from typing import TYPE_CHECKING

from devices.conf import kpns_setting
from devices.delivery import metrics, receipts
from devices.delivery.dbthreads import db_receipts

if TYPE_CHECKING:
    from devices.delivery.node import Node

logger = logging.getLogger(__name__)

DB_TIMEOUT = 10.0


class ReceiptWriter:
    def __init__(self, node: "Node") -> None:
        self.node = node
        # Delivery ids written to sockets, recorded as sent at the next flush.
        self._sent_later: list[int] = []

    async def run(self) -> None:
        while True:
            await asyncio.sleep(kpns_setting("RECEIPT_FLUSH_SECONDS"))
            await self.flush()

    async def flush(self, final: bool = False) -> None:
        node = self.node
        if not (node.receipts or self._sent_later):
            return
        batch, node.receipts = node.receipts, receipts.Receipts()
        written = len(batch.sent)
        # "sent" is written one flush late: most acks arrive meanwhile, and
        # an acked delivery needs no separate sent write (delivered sets
        # sent_at too). In an ack storm this halved the receipt UPDATEs.
        acked = set(batch.delivered)
        fresh = [i for i in batch.sent if i not in acked]
        batch.sent = [i for i in self._sent_later if i not in acked]
        if final:
            batch.sent += fresh
            self._sent_later = []
        else:
            self._sent_later = fresh
        try:
            await asyncio.wait_for(
                db_receipts(receipts.receipts_record)(batch), DB_TIMEOUT
            )
        except Exception:
            logger.warning("receipts not written, retrying", exc_info=True)
            _merge(node.receipts, batch)
            metrics.stats.receipt_failures += 1
            return
        stats = metrics.stats
        stats.sent += written
        stats.delivered += len(batch.delivered) + len(batch.acked_late)
        stats.opened += len(batch.opened)


def _merge(into: receipts.Receipts, batch: receipts.Receipts) -> None:
    into.sent[:0] = batch.sent
    into.delivered[:0] = batch.delivered
    into.opened[:0] = batch.opened
    into.acked_late[:0] = batch.acked_late
