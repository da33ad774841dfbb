"""bot/command_access.py: Discord's rules for who may use a command, evaluated like Discord does."""

from __future__ import annotations

import pytest

from bot.command_access import (
    ADMINISTRATOR,
    CHANNEL,
    ROLE,
    USER,
    AccessUnknown,
    AnimateDenied,
    CommandAccess,
    JobElsewhere,
    Member,
    Setting,
    check_job_place,
    may_use,
)

GUILD, CHANNEL_ID, OTHER_CHANNEL, APP, COMMAND = 100, 200, 201, 300, 400
MOD_ROLE, MUTED_ROLE, USER_ID = 10, 11, 7


def member(*roles: int, permissions: int = 0) -> Member:
    return Member(USER_ID, roles, permissions)


def check(who: Member, command: list[Setting], app: list[Setting], default: int | None) -> bool:
    return may_use(
        who,
        guild_id=GUILD,
        channel_id=CHANNEL_ID,
        command=command,
        app=app,
        default_member_permissions=default,
    )


@pytest.mark.parametrize(
    ("who", "command", "app", "default", "expected"),
    [
        (member(), [], [], None, True),  # nothing set: everyone
        (member(), [], [], 1 << 5, False),  # default_member_permissions: Manage Server
        (member(permissions=1 << 5), [], [], 1 << 5, True),
        (member(), [Setting(GUILD, ROLE, False)], [], None, False),  # @everyone denied
        (member(MOD_ROLE), [Setting(GUILD, ROLE, False), Setting(MOD_ROLE, ROLE, True)], [], None, True),
        (member(MUTED_ROLE), [Setting(MUTED_ROLE, ROLE, False)], [], None, False),
        (
            member(MUTED_ROLE, MOD_ROLE),
            [Setting(MUTED_ROLE, ROLE, False), Setting(MOD_ROLE, ROLE, True)],
            [],
            None,
            True,
        ),
        (
            member(MUTED_ROLE),
            [Setting(MUTED_ROLE, ROLE, False), Setting(USER_ID, USER, True)],
            [],
            None,
            True,
        ),
        (member(), [Setting(CHANNEL_ID, CHANNEL, False)], [], None, False),
        (member(), [Setting(OTHER_CHANNEL, CHANNEL, False)], [], None, True),
        (member(), [Setting(GUILD - 1, CHANNEL, False), Setting(CHANNEL_ID, CHANNEL, True)], [], None, True),
        (member(), [], [Setting(GUILD - 1, CHANNEL, False)], None, False),  # app-wide: no channel
        (member(), [Setting(USER_ID, USER, True)], [Setting(GUILD, ROLE, False)], None, True),  # command wins
        (member(), [], [Setting(GUILD, ROLE, False)], None, False),
        (member(permissions=ADMINISTRATOR), [Setting(GUILD, ROLE, False)], [], None, True),
    ],
)
def test_discords_rules(
    who: Member, command: list[Setting], app: list[Setting], default: int | None, expected: bool
) -> None:
    assert check(who, command, app, default) is expected


async def test_settings_are_read_once_per_server_within_the_cache_time() -> None:
    calls: list[int] = []
    now = [0.0]

    async def fetch_settings(guild_id: int) -> list[dict[str, object]]:
        calls.append(guild_id)
        return [{"id": str(COMMAND), "permissions": [{"id": str(GUILD), "type": ROLE, "permission": False}]}]

    async def fetch_command(guild_id: int) -> tuple[int, int | None]:
        return COMMAND, None

    access = CommandAccess(
        application_id=APP, fetch_settings=fetch_settings, fetch_command=fetch_command, clock=lambda: now[0]
    )
    assert not await access.allows(member(), guild_id=GUILD, channel_id=CHANNEL_ID)
    assert not await access.allows(member(), guild_id=GUILD, channel_id=CHANNEL_ID)
    assert calls == [GUILD]
    now[0] = 61.0
    await access.allows(member(), guild_id=GUILD, channel_id=CHANNEL_ID)
    assert calls == [GUILD, GUILD]


async def test_unreadable_settings_refuse_and_the_cache_alone_says_only_what_it_knows() -> None:
    async def unreadable(guild_id: int) -> list[dict[str, object]]:
        raise ConnectionError("Discord is away")

    async def fetch_command(guild_id: int) -> tuple[int, int | None]:
        return COMMAND, None

    access = CommandAccess(application_id=APP, fetch_settings=unreadable, fetch_command=fetch_command)
    assert access.known_verdict(member(), guild_id=GUILD, channel_id=CHANNEL_ID) is None
    with pytest.raises(AccessUnknown):
        await access.check(member(), guild_id=GUILD, channel_id=CHANNEL_ID)

    async def denied(guild_id: int) -> list[dict[str, object]]:
        return [
            {"id": str(COMMAND), "permissions": [{"id": str(USER_ID), "type": USER, "permission": False}]}
        ]

    access = CommandAccess(application_id=APP, fetch_settings=denied, fetch_command=fetch_command)
    with pytest.raises(AnimateDenied):
        await access.check(member(), guild_id=GUILD, channel_id=CHANNEL_ID)
    assert access.known_verdict(member(), guild_id=GUILD, channel_id=CHANNEL_ID) is False


@pytest.mark.parametrize(
    ("job", "press", "allowed"),
    [
        ((GUILD, CHANNEL_ID, USER_ID), (GUILD, CHANNEL_ID, 8), True),  # anyone, where the job was made
        ((GUILD, CHANNEL_ID, USER_ID), (GUILD + 1, CHANNEL_ID, 8), False),  # another server
        ((GUILD, CHANNEL_ID, USER_ID), (GUILD, OTHER_CHANNEL, 8), False),  # another channel
        ((GUILD, CHANNEL_ID, USER_ID), (None, 999, USER_ID), True),  # the DM fallback, to its member
        ((GUILD, CHANNEL_ID, USER_ID), (None, 999, 8), False),
        ((None, 999, USER_ID), (GUILD, 999, USER_ID), False),  # a DM job named in a server
    ],
)
def test_a_job_is_acted_on_only_where_it_was_made(
    job: tuple[int | None, int, int], press: tuple[int | None, int, int], allowed: bool
) -> None:
    def place() -> None:
        check_job_place(
            job_guild_id=job[0],
            job_channel_id=job[1],
            job_user_id=job[2],
            guild_id=press[0],
            channel_id=press[1],
            user_id=press[2],
        )

    if allowed:
        place()
    else:
        with pytest.raises(JobElsewhere):
            place()
