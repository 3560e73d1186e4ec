"""Channels by slug: the only way core code reaches a channel."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tuition.channels.base import Channel
from tuition.domain.errors import InvalidRequest


class ChannelRegistry:
    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self._channels: dict[str, Channel] = {}
        for channel in channels:
            self.add(channel)

    def add(self, channel: Channel) -> None:
        if channel.slug in self._channels:
            raise ValueError(f"channel {channel.slug!r} registered twice")
        self._channels[channel.slug] = channel

    def get(self, slug: str, *, param: str = "channel") -> Channel:
        try:
            return self._channels[slug]
        except KeyError:
            known = ", ".join(sorted(self._channels)) or "none"
            hint = " (the sandbox is test mode's only: use an sk_test_ key)" * (slug == "sandbox")
            raise InvalidRequest(
                f"channel {slug!r} is not enabled here{hint}; enabled: {known}",
                code="channel_unknown",
                param=param,
            ) from None

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._channels.values())

    def __contains__(self, slug: object) -> bool:
        return slug in self._channels
