"""The ``Assistant``'s conversations: the film's chat history (listing, reopening, exporting),
starting a conversation, answering a question again or an edited question, and saving
each message (stopped answers and the coverage note of a partly watched film included).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.errors import MovieChatError, NotReady
from moviechat_desktop.engine.progress import CancelToken

if TYPE_CHECKING:
    from moviechat_desktop.engine.model.llm import Conversation, GenerationSettings
    from moviechat_desktop.engine.store.chat_history import ChatRecord, ConversationSummary


class AssistantChat:
    """Part of ``Assistant`` (engine/assistant.py), whose ``__init__`` sets the state used here."""

    def new_conversation(self, conversation_id: str | None = None) -> None:
        """Start a new conversation; earlier ones stay in the film's history. ``conversation_id``
        names it (a client that started it elsewhere, e.g. before a server restart)."""
        from moviechat_desktop.engine.model.llm import Conversation
        from moviechat_desktop.engine.store.chat_history import new_conversation_id

        self._conversation = Conversation()
        self._conversation_id = conversation_id or new_conversation_id()

    @property
    def conversation(self) -> Conversation:
        if self._conversation is None:
            self.new_conversation()
        assert self._conversation is not None
        return self._conversation

    @property
    def conversation_id(self) -> str | None:
        return self._conversation_id

    @property
    def history_error(self) -> str | None:
        """Why the last chat message could not be saved (disk full…); None when it was."""
        return None if self._store is None else self._store.history_error

    def conversation_records(self, conversation_id: str | None = None) -> list[ChatRecord]:
        """The messages of a conversation of the open film (default: the current one)."""
        if self._store is None or self._store.history is None:
            return []
        return self._store.history.conversation(conversation_id or self._conversation_id or "")

    def conversations(self) -> list[ConversationSummary]:
        """The open film's conversations, oldest first (the current one once it has a message)."""
        if self._store is None or self._store.history is None:
            return []
        return self._store.history.conversations()

    def open_conversation(self, conversation_id: str) -> None:
        """Continue an earlier conversation of the open film (its follow-ups build on it)."""
        from moviechat_desktop.engine.store.chat_history import to_conversation

        records = self.conversation_records(conversation_id)
        if not records:
            raise NotReady(f"no conversation {conversation_id!r} about this film")
        self._conversation_id, self._conversation = conversation_id, to_conversation(records)

    def export_markdown(self, conversation_id: str | None = None) -> str:
        """A conversation of the open film as Markdown (default: the current one)."""
        from moviechat_desktop.engine.store.chat_history import export_markdown

        video, _ = self._require_film()
        return export_markdown(self.conversation_records(conversation_id), video.path.name)

    def regenerate(
        self,
        question_id: str,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
        *,
        frame: Any = None,
    ) -> Iterator[str]:
        """Answer question ``question_id`` of the current conversation again (same mode and
        time), streaming. The new answer replaces the old one on the conversation's branch
        (both stay in the history); the turns after it drop out of the branch and of the
        model's context, which is the branch up to the question. ``NotReady`` when the
        question is not on the current branch or the history is off."""
        from moviechat_desktop.engine.store.chat_history import to_conversation

        branch, index = self._question_on_branch(question_id)
        question = branch[index]
        after = branch[index + 1] if index + 1 < len(branch) else None
        options: dict[str, Any] = {"question_id": question.id}
        if after is not None and after.role == "assistant":
            options["replaces_answer"] = after.id
            options["record_question"] = False
        elif after is None:  # its answer was never saved: answer it now
            options["record_question"] = False
        else:  # unanswered, with turns after it: ask it again in its place
            options["replaces_question"] = question.id
        yield from self._answer(
            question.text,
            question.mode,
            question.at_s,
            settings,
            cancel,
            frame=frame,
            context=to_conversation(branch[:index]),
            **options,
        )

    def edit_question(
        self,
        question_id: str,
        text: str,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
        *,
        frame: Any = None,
    ) -> Iterator[str]:
        """Ask ``text`` in place of question ``question_id`` of the current conversation (its
        mode and time are kept), streaming the answer. The edited question replaces the old
        one on the branch (both stay in the history); the old question's answer and the turns
        after it drop out of the branch and of the model's context. ``NotReady`` as for
        ``regenerate``."""
        from moviechat_desktop.engine.store.chat_history import to_conversation

        branch, index = self._question_on_branch(question_id)
        old = branch[index]
        yield from self._answer(
            text,
            old.mode,
            old.at_s,
            settings,
            cancel,
            frame=frame,
            context=to_conversation(branch[:index]),
            replaces_question=old.id,
        )

    def _question_on_branch(self, question_id: str) -> tuple[list[ChatRecord], int]:
        """The current conversation's branch and the index of question ``question_id`` on it
        (or of the question that replaced it since)."""
        from moviechat_desktop.engine.store.chat_history import current_branch, find_on_branch

        self._require_film()
        if self._store is None or self._store.history is None:
            raise NotReady("regenerating or editing needs the chat history, which is off")
        if not isinstance(question_id, str) or not question_id:
            raise MovieChatError("no question was named")
        records = self.conversation_records()
        branch = current_branch(records)
        index = find_on_branch(branch, question_id, records)
        if index < 0 or branch[index].role != "user":
            raise NotReady("that question is not part of the current conversation")
        return branch, index

    def _coverage(self, mode: str) -> str:
        """The coverage note of a whole-film answer while the film is partly watched."""
        from moviechat_desktop.engine.store.chat_history import coverage_note

        status = self.status()
        if mode != "global" or status.finished or status.fragments_total == 0:
            return ""
        watched = status.covered[0][1] if status.covered and status.covered[0][0] <= 0.5 else 0.0
        return coverage_note(status.fraction, watched)

    def _last_question_id(self) -> str | None:
        """The id of the current branch's last question (asked again after a crash)."""
        from moviechat_desktop.engine.store.chat_history import current_branch

        branch = current_branch(self.conversation_records())
        return next((r.id for r in reversed(branch) if r.role == "user"), None)

    def _record(
        self,
        role: str,
        text: str,
        mode: str,
        at_s: float | None,
        settings: GenerationSettings | None = None,
        **v2: Any,
    ) -> str | None:
        """Save one message (``v2``: ``replaces``, ``stopped``, ``coverage``); its id."""
        if self._store is not None and self._conversation_id is not None:
            extra = None if settings is None else dataclasses.asdict(settings)
            return self._store.record(
                self._conversation_id, role, text, mode=mode, at_s=at_s, settings=extra, **v2
            )
        return None
