"""A server's voice library (/voices) and prompt block list (/showcase-admin blocklist), from the rules
to /animate through discord.py and the fake Discord."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.blocklist import MAX_WILDCARD_PATTERNS, PromptBlocked, PromptFilter, Rules, check_pattern, matches
from bot.errors import InputRefused
from bot.voices import check_name, check_voice_id
from tests.fakes import payloads as p
from tests.world import World, running_world

ADMIN = p.DEFAULT_EVERYONE_PERMISSIONS | p.MANAGE_GUILD
MEMBER_ID = 1_143_850_174_982_443_222
ROOT = Path(__file__).resolve().parent.parent


# ----- the rules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "prompt", "blocked"),
    [
        ("cat", "a cat jumps", True),
        ("cat", "a CAT jumps", True),
        ("cat", "the category of things", False),
        ("cat", "a bobcat", False),
        ("cat", "cat.", True),
        ("gor*", "gory scene", True),
        ("gor*", "gore", True),
        ("gor*", "a gorilla", True),
        ("gor*", "agora", False),
        ("*cat", "a bobcat", True),
        ("c?t", "cut it", True),
        ("c?t", "coat", False),
        ("bad word", "a bad   word here", True),
        ("bad word", "a bad sword", False),
        ("cat", "ＣＡＴ", True),  # fullwidth letters fold to ASCII under NFKC
        ("cat", "c\u200bat", True),  # an invisible zero-width space does not split the word
        ("cat", "ca\ufe0ft", True),  # nor a variation selector
        ("cat", "c\u034fat", True),  # nor a combining grapheme joiner
        ("cat", "c\u3164at", True),  # nor a Hangul filler
        ("café", "CAFÉ au lait", True),
        ("a.b", "axb", False),  # punctuation in a pattern is literal, not a regex
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "acb", False),
        ("*gore*", "preGOREs", True),
        ("*a?c*", "xxabcyy", True),
        ("*a?c*", "xxacyy", False),
        ("bad* w*rd", "badly weird", True),
        # Punctuation is no boundary: a phrase split by a comma is the same phrase.
        ("bad* w*rd", "badly, weird", True),
        ("bad* w*rd", "badly sweird", False),
    ],
)
def test_patterns_match_whole_words_with_wildcards(pattern: str, prompt: str, blocked: bool) -> None:
    assert matches(pattern, prompt) is blocked


# Ways to write a listed word that a reader still reads as that word: each must be refused.
EVASIONS = [
    ("gore", "gore2"),
    ("gore", "2gore"),
    ("gore", "go-re"),
    ("gore", "g.o.r.e"),
    ("gore", "g_o_r_e"),
    ("gore", "go2re"),
    ("gore", "g\u043ere"),  # Cyrillic о
    ("gore", "\u0261\u03bfr\u0435"),  # Latin script g, Greek omicron, Cyrillic е
    ("gore", "góre"),
    ("gore", "g\u0335ore"),  # combining short stroke overlay
    ("gore", "g\u0336o\u0336r\u0336e\u0336"),  # struck through
    ("gore", "gore_"),
    ("gore", "_gore_"),
    ("gore", "GORE!"),
    ("gore", "g0re"),  # zero for o
    ("gore", "g0re-fest"),
    ("gore", "ｇｏｒｅ"),  # full width
    ("gore", "\U0001d420\U0001d428\U0001d42b\U0001d41e"),  # mathematical bold
    ("gore", "g\u200bo\u200dre"),  # zero-width space and joiner
    ("gore", "a blood-gore scene"),
    ("gore", "(gore)"),
    ("gore", "g🔥ore"),
    ("gore", "gore\u20dd"),  # enclosing circle
    ("kill", "ki||"),
    ("kill", "ki11"),
    ("naked", "nakéd"),
    ("naked", "NAKED"),
    ("blood bath", "blood-bath"),
    ("blood bath", "blood, bath"),
    ("blood bath", "bl00d-bath"),
    ("gor*", "g\u043ery"),
    ("*porn*", "p.o.r.n.o.g.r.a.p.h.y"),
    ("r2d2", "R2-D2"),
    # The common number and sign substitutions.
    ("banned", "b4nn3d"),
    ("banned", "b4nn3d!"),
    ("ass", "@ss"),
    ("ass", "a$$"),
    ("sex", "$3x"),
    ("sex", "s3x"),
    ("toast", "7o457"),
    ("nazi", "n4z1"),
    ("nazi", "naz!"),
    ("kill", "k1ll"),
    ("kill", "k!ll"),
    ("gore", "g0r3-fest"),
    ("gor*", "g0r3y"),
    ("4chan", "4chan"),
    ("4chan", "achan"),
]

# Letters written apart or stretched (issue 18 item 4): each must be refused too.
APART_OR_STRETCHED = [
    ("bad", "b a d"),
    ("bad", "b.a.d"),
    ("bad", "b-a-d"),
    ("bad", "b . a . d"),
    ("bad", "baaad"),
    ("bad", "baaaaaaaaad!"),
    ("bad", "b a a a d"),
    ("cat", "c a t"),
    ("gore", "g o r e scene"),
    ("gore", "gooooore"),
    ("gore", "g-o-o-o-r-e"),
    ("kill", "kiiill"),
    ("kill", "killlll"),
    ("gor*", "g o r y"),
    ("gor*", "goooory"),
    ("blood bath", "b l o o d bath"),
    ("blood bath", "bloooood bath"),
]

# Chunked with spaces or signs, and stretched more than one letter: each must be refused too.
CHUNKED_OR_STRETCHED_TWICE = [
    ("banned", "baaaannnnned"),  # one letter stretched that is single, one that is double
    ("banned", "bbbaaannnnneeeddd"),
    ("banned", "b a a a a n n n n n e d"),
    ("kill", "kiiiilllll"),
    ("xxx", "xxxxxxx"),
    ("banned", "b an ned"),
    ("banned", "ba nn ed"),
    ("banned", "b a nn e d"),
    ("banned", "b an.ned"),
    ("banned", "b\u200b an ned"),
    ("banned", "b aaa nn ed"),  # chunked and stretched
    ("banned", "so b an ned it is"),
    ("kill", "k i ll"),
    ("naked", "na k ed"),
    ("blood bath", "bllloooood baaath"),
]

# Ordinary words that a blocked word's letters collapse into ("as" is `ass` with its double s read once),
# and ordinary short words in a row: each must pass.
ORDINARY_SHORT_WORDS = [
    ("ass", "as you like"),
    ("ass", "a pass"),
    ("butt", "but then"),
    ("god", "a good day"),
    ("boob", "bob waves"),
    ("poop", "pop art"),
    ("weed", "the couple wed"),
    ("hell", "hello there"),
    ("hell", "heeeello there"),
    ("kill", "a kiln"),
    ("banned", "baned"),
    ("banned", "ban ned"),  # two chunks are ordinary text
    ("gore", "a go re"),
    ("penis", "a pen is on the desk"),
    ("isis", "it is is"),
    ("xxx", "xx"),
]

# Prompts that only look like a listed word: each must pass.
INNOCENT = [
    ("gore", "a blacksmith at the forge"),
    ("gore", "an ogre in the swamp"),
    ("gore", "a gorgeous sunset"),
    ("gore", "a gorey illustration"),  # another word: list `gore*` to block it too
    ("gore", "go research the ruins"),
    ("gore", "ego re-enactment"),
    ("gore", "G.O. Reynolds waves"),
    ("gore", "the mountain gorge"),
    ("gore", "a go re"),
    ("cat", "the category of things"),
    ("cat", "a bobcat"),
    ("cat", "scatter the leaves"),
    ("kill", "a skilled painter"),
    ("kill", "the kiln glows"),
    ("naked", "snaked through the hills"),
    ("blood bath", "blood orange bath"),
    ("r2d2", "robot r2"),
    ("gor*", "agora at noon"),
    ("ask", "a 4k video of the sea"),
    ("sex", "a 3d scene in 5 seconds"),
    ("nazi", "nazl"),
    ("kill", "1 kiln, 2 kilns!"),
]


@pytest.mark.parametrize(("pattern", "prompt"), EVASIONS)
def test_look_alikes_marks_and_signs_in_words_do_not_get_around_the_list(pattern: str, prompt: str) -> None:
    assert matches(pattern, prompt), (pattern, prompt)


@pytest.mark.parametrize(("pattern", "prompt"), APART_OR_STRETCHED)
def test_letters_written_apart_or_stretched_do_not_get_around_the_list(pattern: str, prompt: str) -> None:
    assert matches(pattern, prompt), (pattern, prompt)


@pytest.mark.parametrize(("pattern", "prompt"), CHUNKED_OR_STRETCHED_TWICE)
def test_words_chunked_or_stretched_in_several_places_do_not_get_around_the_list(
    pattern: str, prompt: str
) -> None:
    assert matches(pattern, prompt), (pattern, prompt)


@pytest.mark.parametrize(("pattern", "prompt"), ORDINARY_SHORT_WORDS)
def test_ordinary_short_words_are_not_read_as_a_blocked_word(pattern: str, prompt: str) -> None:
    assert not matches(pattern, prompt), (pattern, prompt)


# Words servers commonly block, and ordinary prompts in several languages none of them is in: letters
# written apart ("il y a", "e o a") and stretched ("Schifffahrt", "zzz") must not join into one of them.
COMMON_BLOCKED = [
    "gore", "sex", "nude", "naked", "porn*", "nsfw", "blood", "kill", "dead", "gun", "rape", "nazi",
    "drug*", "ass", "tits", "fuck*", "shit", "bitch", "hitler", "suicide", "murder", "torture", "corpse",
    "weed", "meth", "boob*", "nud*", "god", "hell", "xxx",
]  # fmt: skip
ORDINARY_PROMPTS = [
    "a cat waves at the camera as the sun sets over the sea",
    "I am a girl with a red umbrella, walking in the rain",
    "the good old dog sleeps; zzz… then a bird sings aaaah",
    "a b c letters float in the air",
    "plan B: a balloon drifts over the city",
    "www dot example, a website on a screen",
    "Ein Schifffahrtsmuseum am Hafen, die Brennnessel wächst, Kaffeeersatz auf dem Tisch",
    "Der Hund läuft über die Wiese und bellt",
    "il y a un chat sur le toit, et il a faim",
    "à la plage, y a du soleil et un vent léger",
    "el perro y el gato juegan, y a la noche duermen",
    "o sol e o mar, e a menina sorri para a câmera",
    "ela viu o filme e o a e i o u na tela",
    "a e i o u: as vogais dançam na tela",
    "il gatto e il cane corrono; e a casa dormono",
    "猫が窓辺で眠り、桜の花びらが舞う",
    "Ooooh, a huuuge wave crashes on the rocks",
    "the hello kitty plush sits on a shelf",
    "she says helloooo to her friends",
    "it is as it is, so we go on to the end of it",
    "I am at a spa on my day off and he is in on it",
    "un an de la vie: il y a le ciel, et le vent va et vient",
    "yo no sé si él va a ir a la mar",
    "eu vi o mar e o céu, ai que lindo",
    "a to z, an ox, my ex, go up, be a man",
]


@pytest.mark.parametrize("prompt", ORDINARY_PROMPTS)
def test_ordinary_prompts_in_several_languages_pass_a_list_of_common_blocked_words(prompt: str) -> None:
    assert Rules.build(COMMON_BLOCKED).find(prompt) is None, prompt


@pytest.mark.parametrize(("pattern", "prompt"), INNOCENT)
def test_words_that_only_resemble_a_listed_word_pass(pattern: str, prompt: str) -> None:
    assert not matches(pattern, prompt), (pattern, prompt)


async def test_the_refusal_names_the_word_and_wildcard_entries_are_capped(tmp_path: Path) -> None:
    from bot.store import Database

    async with await Database.open(tmp_path / "bot.sqlite3") as db:
        guild, admin = 111, 222
        filtered = PromptFilter(db)
        await filtered.add(guild, "gore", actor_id=admin)
        with pytest.raises(PromptBlocked) as refused:
            await filtered.check(guild, "a g\u043ere-fest")
        assert "“gore”" in refused.value.user_message and refused.value.pattern == "gore"
        await filtered.check(guild, "an ogre at the forge")
        for n in range(MAX_WILDCARD_PATTERNS):
            await filtered.add(guild, f"w{n}x*", actor_id=admin)
        with pytest.raises(InputRefused, match=r"entries with `\*` or `\?`"):
            await filtered.add(guild, "one?more", actor_id=admin)
        await filtered.add(guild, "whole words still fit", actor_id=admin)  # they cost nothing
        assert len(await filtered.patterns(guild)) == MAX_WILDCARD_PATTERNS + 2
        stored = await db.fetchall("SELECT COUNT(*) FROM prompt_blocklist WHERE pattern = 'one?more'")
        assert stored[0][0] == 0


def test_a_pattern_with_many_wildcards_checks_a_long_prompt_at_once() -> None:
    # Each `*` was a backtracking `\w*`: five of them against one long word took hours, with the event
    # loop (every server's bot) frozen. Run apart, so a regression fails instead of hanging the suite.
    code = (
        "from bot.blocklist import matches;"
        "assert not matches('*a*a*a*a*a*b', 'a' * 2500);"
        "assert matches('*a*a*a*a*a*b', 'a' * 2500 + 'b')"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


@pytest.mark.parametrize("pattern", ["", "   ", "*", "* ?", "x" * 101])
def test_patterns_that_would_block_everything_or_nothing_are_refused(pattern: str) -> None:
    with pytest.raises(InputRefused):
        check_pattern(pattern)


def test_voice_names() -> None:
    assert check_name("  Old   narrator ") == "Old narrator"
    for bad in ("", "<@123>", "x" * 33, "-dash-first"):
        with pytest.raises(InputRefused):
            check_name(bad)


# ----- through Discord ------------------------------------------------------------------------------------


def admin_command(world: World, group: str, subcommand: str, options: list[dict[str, Any]], **kw: Any) -> Any:
    """A slash command in a subcommand (group) such as /showcase-admin blocklist add word:…"""
    inner = [{"name": subcommand, "type": p.OPTION_SUB_COMMAND, "options": options}]
    name, _, sub_group = group.partition(" ")
    if sub_group:
        inner = [{"name": sub_group, "type": 2, "options": inner}]  # SUB_COMMAND_GROUP
    kw.setdefault("member_permissions", ADMIN)
    return p.slash_command(world.discord, name=name, options=inner, **kw)


async def answer(world: World, payload: dict[str, Any]) -> str:
    record = await world.discord.dispatch_interaction(payload)
    callback = await world.discord.wait_for_callback(record.id)
    assert callback.type == 4 and callback.ephemeral
    assert callback.data["allowed_mentions"]["parse"] == []
    return str(callback.data["content"])


async def autocomplete(world: World, command: str, options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    payload = p.slash_command(world.discord, name=command, options=options)
    payload["type"] = p.APPLICATION_COMMAND_AUTOCOMPLETE
    record = await world.discord.dispatch_interaction(payload)
    callback = await world.discord.wait_for_callback(record.id)
    assert callback.type == 8
    return list(callback.data["choices"])


async def test_commands_are_for_managers(tmp_path: Path) -> None:
    async with running_world(tmp_path, command_guild_ids=[p.DEFAULT_GUILD_ID]) as world:
        registered = {c["name"]: c for c in world.discord.registered_commands()}
        for name in ("voices", "showcase-admin"):
            assert str(registered[name]["default_member_permissions"]) == str(p.MANAGE_GUILD)
        assert {o["name"] for o in registered["voices"]["options"]} == {"add", "remove", "list"}
        blocklist = next(o for o in registered["showcase-admin"]["options"] if o["name"] == "blocklist")
        assert {o["name"] for o in blocklist["options"]} == {"add", "remove", "list"}

        everyone = p.DEFAULT_EVERYONE_PERMISSIONS
        add = admin_command(
            world, "showcase-admin blocklist", "add", [p.option("word", "cat")], member_permissions=everyone
        )
        assert "Manage Server" in await answer(world, add)
        voice = admin_command(
            world, "voices", "add", [p.option("name", "n"), p.option("id", "v1")], member_permissions=everyone
        )
        assert "Manage Server" in await answer(world, voice)
        assert await world.db.fetchall("SELECT * FROM prompt_blocklist") == []
        assert await world.db.fetchall("SELECT * FROM voices") == []


async def test_a_blocked_prompt_is_refused_privately_before_anything_is_charged(tmp_path: Path) -> None:
    async with running_world(tmp_path, command_guild_ids=[p.DEFAULT_GUILD_ID]) as world:
        add = admin_command(world, "showcase-admin blocklist", "add", [p.option("word", "gor*")])
        assert await answer(world, add) == "`gor*` is now refused in prompts."
        again = admin_command(world, "showcase-admin blocklist", "add", [p.option("word", "GOR*")])
        assert await answer(world, again) == "`GOR*` was already on the block list."

        refused = await world.animate("a Gory <@&123> scene", user_id=MEMBER_ID)
        text = await world.private_answer(refused)
        assert text == (
            "Your prompt contains “gory”, which this server does not allow in prompts. "
            "Please rephrase it; nothing was charged."
        )
        assert await world.db.fetchall("SELECT * FROM jobs") == []
        assert await world.db.fetchall("SELECT * FROM quota_ledger") == []
        assert world.sunra.submissions == [] and world.sunra.uploads == {}

        # The negative prompt names what to avoid, so it may use a blocked word.
        allowed = await world.animate("a calm lake", user_id=MEMBER_ID, negative_prompt="gore, blur")
        assert (await world.ended(allowed)).state == "delivered"

        listed = admin_command(world, "showcase-admin blocklist", "list", [])
        assert await answer(world, listed) == "**Blocked in prompts (1):** `gor*`"
        choices = await autocomplete(
            world,
            "showcase-admin",
            [
                {
                    "name": "blocklist",
                    "type": 2,
                    "options": [
                        {
                            "name": "remove",
                            "type": p.OPTION_SUB_COMMAND,
                            "options": [{**p.option("word", "go"), "focused": True}],
                        }
                    ],
                }
            ],
        )
        assert choices == [{"name": "gor*", "value": "gor*"}]
        remove = admin_command(world, "showcase-admin blocklist", "remove", [p.option("word", "gor*")])
        assert await answer(world, remove) == "`gor*` is allowed in prompts again."
        ok = await world.animate("a gory scene", user_id=MEMBER_ID)
        assert (await world.ended(ok)).state == "delivered"

        audit = await world.db.fetchall("SELECT action, details FROM quota_audit ORDER BY id")
        assert [row[0] for row in audit] == ["blocklist_add", "blocklist_remove"]


async def test_named_voices_autocomplete_and_reach_the_api(tmp_path: Path) -> None:
    async with running_world(tmp_path, command_guild_ids=[p.DEFAULT_GUILD_ID]) as world:
        add = admin_command(world, "voices", "add", [p.option("name", "Narrator"), p.option("id", "vo_123")])
        assert (await answer(world, add)).startswith("Voice **Narrator** is now `vo_123`.\nIn /animate")
        other = admin_command(world, "voices", "add", [p.option("name", "Child"), p.option("id", "vo_777")])
        await answer(world, other)
        renamed = admin_command(
            world, "voices", "add", [p.option("name", "narrator"), p.option("id", "vo_9")]
        )
        assert (await answer(world, renamed)).startswith(
            "Voice **narrator** is now `vo_9` (it was `vo_123`)."
        )

        listed = await answer(world, admin_command(world, "voices", "list", []))
        assert listed.startswith("**Voices (2):**\n• **Child**: `vo_777`\n• **narrator**: `vo_9`\n")
        assert "<<<voice_1>>>" in listed

        choices = await autocomplete(
            world,
            "animate",
            [p.option("prompt", "x"), {**p.option("voice_1", "NAR"), "focused": True}],
        )
        assert choices == [{"name": "narrator · vo_9", "value": "vo_9"}]
        everything = await autocomplete(world, "animate", [{**p.option("voice_2", ""), "focused": True}])
        assert [c["value"] for c in everything] == ["vo_777", "vo_9"]

        # Picked from the list (the id), typed by name (any case), or a raw id: each reaches the API as an id.
        job = await world.animate(
            "<<<voice_1>>> says hi to <<<voice_2>>>", user_id=MEMBER_ID, voice_1="vo_9", voice_2="CHILD"
        )
        assert (await world.ended(job)).state == "delivered"
        raw = await world.animate("<<<voice_1>>> sings", user_id=MEMBER_ID, voice_1="vo_raw_1")
        assert (await world.ended(raw)).state == "delivered"
        voice_ids = [s["voice_ids"] for s in world.sunra.submissions]
        assert voice_ids == [["vo_9", "vo_777"], ["vo_raw_1"]]

        def remove() -> dict[str, Any]:
            return admin_command(world, "voices", "remove", [p.option("name", "CHILD")])

        assert await answer(world, remove()) == "Removed the voice **Child** (`vo_777`)."
        assert await answer(world, remove()) == "This server has no voice named **CHILD**."
        # The admin's text shows as typed: no markdown of its own, no mention.
        hostile = admin_command(
            world, "voices", "remove", [p.option("name", "**@everyone** [x](https://e.x)")]
        )
        said = await answer(world, hostile)
        assert said.startswith("This server has no voice named **\\*\\*@\u200beveryone")
        assert "\\[x](https://e.x)" in said


async def test_a_long_voice_list_is_cut_between_voices_and_keeps_the_help(tmp_path: Path) -> None:
    async with running_world(tmp_path, command_guild_ids=[p.DEFAULT_GUILD_ID]) as world:
        for n in range(30):
            options = [p.option("name", f"voice {n:02d} " + "x" * 20), p.option("id", "v" * 90 + str(n))]
            await answer(world, admin_command(world, "voices", "add", options))
        listed = await answer(world, admin_command(world, "voices", "list", []))
        assert len(listed) <= 2000
        lines = listed.split("\n")
        assert lines[0] == "**Voices (30):**" and "<<<voice_1>>>" in lines[-1]
        shown = [line for line in lines if line.startswith("• **")]
        assert all(line.endswith("`") for line in shown)  # whole entries only
        assert f"… and {30 - len(shown)} more" in listed


@pytest.mark.parametrize("voice_id", ["vo`1", "`", "a b", " ", "x" * 101])
def test_a_voice_id_that_would_break_its_code_span_or_has_spaces_is_refused(voice_id: str) -> None:
    """/voices list shows each id in a code span (`id`): a backtick would end it early."""
    with pytest.raises(InputRefused, match="no spaces or backticks"):
        check_voice_id(voice_id)


def test_an_ordinary_voice_id_is_kept() -> None:
    assert check_voice_id("  vo_9-AB.c:1  ") == "vo_9-AB.c:1"
