"""What the chat panel costs the GUI thread in a long conversation (no model needed).

A ``ChatPanel`` (offscreen when there is no display) is given ``entries`` finished questions
with answers of a real model's length (~300 tokens, times in them linked), then one answer is
streamed into it chunk by chunk and finishes. Measured: laying the whole conversation out
(what reopening a film with a long chat, or switching conversations, costs once), the worst
and median time to show one streamed chunk, and the time to settle the finished answer.
"""

from __future__ import annotations

import statistics
import time

from PySide6.QtWidgets import QApplication

from moviechat_desktop.ui.chat_panel import ChatPanel
from moviechat_desktop.ui.chat_transcript import ANSWERING, DONE

ANSWER = "The man in the red jacket crosses the square at 00:42 and talks to the woman. " * 16


def measure_chat(entries: int = 100, chunks: int = 60) -> dict[str, float]:
    app = QApplication.instance() or QApplication(["moviechat-bench"])
    panel = ChatPanel()
    panel.resize(420, 700)
    panel.show()
    for i in range(entries):
        entry = panel.transcript.add(f"Question {i}: what happens here?")
        entry.answer, entry.state = ANSWER, DONE
    live = panel.transcript.add("And what happens next?")
    live.state = ANSWERING

    def timed() -> float:
        start = time.perf_counter()
        panel.render_now()
        app.processEvents()
        return 1000 * (time.perf_counter() - start)

    layout_ms = timed()
    chunk_ms = []
    for k in range(chunks):
        live.answer += f"word{k} "
        chunk_ms.append(timed())
    live.state = DONE
    settle_ms = timed()
    panel.close()
    panel.deleteLater()
    app.processEvents()
    return {
        "chat_entries": float(entries),
        "chat_layout_ms": layout_ms,
        "chat_chunk_max_ms": max(chunk_ms),
        "chat_chunk_median_ms": statistics.median(chunk_ms),
        "chat_settle_ms": settle_ms,
    }
