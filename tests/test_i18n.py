"""The member's language: catalogues complete, sentences rendered by locale, commands localized, and
/animate from a member's own install (a server without the bot, a DM) through the fake Discord."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import InputRefused
from bot.i18n import CATALOGUES, Message, _n, language, placeholders, render, stored_sentence
from bot.i18n.msgids import marked
from bot.invite import user_install_url
from bot.request import build_request
from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord, InteractionRecord
from tests.fakes.discord_server._components import buttons, v2_text
from tests.fakes.sunra_server import FakeSunra
from tests.test_showcase import (
    ALICE,
    GUILD,
    button_labels,
    delivered_job,
    embed_answer,
    is_card,
    press,
    set_channel,
    text_of,
)
from tests.world import SUNRA_KEY, World, loosen_rate_limits, running_world

EPHEMERAL = 64


def test_every_catalogue_has_every_marked_message_and_nothing_stale() -> None:
    wanted = marked()
    assert len(wanted) > 80
    for code, catalogue in CATALOGUES.items():
        assert sorted(set(wanted) - set(catalogue)) == [], f"{code} lacks these"
        assert sorted(set(catalogue) - set(wanted)) == [], f"{code} has stale entries"
        for msgid, entry in catalogue.items():
            forms = entry if isinstance(entry, tuple) else (entry,)
            english = placeholders(msgid) | {p for other in wanted[msgid] for p in placeholders(other)}
            for form in forms:
                assert form.strip(), (code, msgid)
                assert placeholders(form) <= english, (code, msgid, form)


def test_a_refusal_is_german_for_de_japanese_for_ja_and_english_otherwise() -> None:
    with pytest.raises(InputRefused) as refused:
        build_request(prompt="   ", image=None, duration=5)  # type: ignore[arg-type]
    message = refused.value.user_message
    assert message == "The prompt is empty. Please describe the motion you want to see."
    assert (
        render(message, "de") == "Der Prompt ist leer. Beschreibe bitte die Bewegung, die du sehen möchtest."
    )
    assert render(message, "ja") == "プロンプトが空です。見たい動きを説明してください。"
    assert render(message, "ko") == str(message) == render(message, "en-GB")
    assert language("es-419") == "es" and language("pt-BR") == "pt-BR" and language(None) == "en"


def test_parameters_are_rendered_in_the_same_language_and_plurals_follow_the_language() -> None:
    left = Message(
        "You have {credits} left; your allowance ({allowance}) resets {when}.",
        credits=_n(1, "{n} credit", "{n} credits"),
        allowance=Message("{n} per day", n=20),
        when="<t:1:R>",
    )
    assert str(left) == "You have 1 credit left; your allowance (20 per day) resets <t:1:R>."
    assert (
        render(left, "de")
        == "Du hast noch 1 Credit; dein Kontingent (20 pro Tag) wird <t:1:R> zurückgesetzt."
    )
    assert render(_n(0, "{n} credit", "{n} credits"), "fr") == "0 crédit"
    assert render(_n(0, "{n} credit", "{n} credits"), "es-ES") == "0 créditos"


def test_a_missing_translation_falls_back_to_english() -> None:
    text = Message("A sentence no catalogue has, about {thing}.", thing=Message("image"))
    assert render(text, "de") == "A sentence no catalogue has, about Bild."


def test_the_user_install_link() -> None:
    assert user_install_url(42) == (
        "https://discord.com/oauth2/authorize?client_id=42&integration_type=1&scope=applications.commands"
    )


# ------------------------------------------------------------------------------- through the fake Discord


async def test_animate_is_registered_for_both_installs_everywhere_with_localizations(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        registered = {c["name"]: c for c in world.discord.registered_commands()}
        animate, menu = registered["animate"], registered["Animate"]
        for command in (animate, menu):
            assert command["integration_types"] == [0, 1] and command["contexts"] == [0, 1, 2]
        assert animate["name_localizations"]["de"] == "animieren"
        assert animate["name_localizations"]["ja"] == "アニメ化"
        assert animate["description_localizations"]["ja"] == "Kling 2.6 Pro で画像を短い動画にします"
        image = next(o for o in animate["options"] if o["name"] == "image")
        assert image["name_localizations"]["de"] == "bild"
        assert menu["name_localizations"]["de"] == "Animieren"
        # Server-only commands stay with a server's install, in servers.
        assert registered["quota-admin"]["integration_types"] == [0]
        assert registered["quota-admin"]["contexts"] == [0]
        assert registered["showcase-admin"]["integration_types"] == [0]


async def refusal(world: World, locale: str) -> str:
    options = {"image": world.image(), "prompt": "a cat", "voice_1": "v1"}
    record = await world.discord.dispatch_interaction(
        p.slash_command(world.discord, options=options, locale=locale)
    )
    callback = await world.discord.wait_for_callback(record.id)
    assert callback.type == 4 and callback.flags & EPHEMERAL
    return str(callback.data["content"])


async def test_a_refusal_in_a_german_and_a_japanese_client(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        assert (await refusal(world, "de")).startswith(
            "`voice_1` wurde angegeben, aber der Prompt enthält nirgends"
        )
        assert "プロンプトに <<<voice_1>>> がありません" in await refusal(world, "ja")
        assert (await refusal(world, "en-US")).startswith("`voice_1` was given but the prompt never says")
        assert world.sunra.count("submit") == 0


async def from_user_install(
    world: World, *, guild_id: int | None, context: int, locale: str = "en-US"
) -> InteractionRecord:
    options = {"image": world.image(), "prompt": "the cat waves"}
    payload = p.slash_command(
        world.discord, options=options, guild_id=guild_id, user_install=True, context=context, locale=locale
    )
    return await world.discord.dispatch_interaction(payload)


async def test_a_user_install_in_a_server_without_the_bot_is_refused_politely_when_the_allowance_is_off(
    tmp_path: Path,
) -> None:
    async with running_world(tmp_path) as world:
        interaction = await from_user_install(world, guild_id=p.snowflake(), context=0, locale="de")
        answer = await world.private_answer(interaction)
        assert answer.startswith("/animate ist hier nicht verfügbar"), answer
        assert world.sunra.count("submit") == 0


async def test_a_user_install_in_a_server_without_the_bot_and_in_a_dm_draws_on_the_outside_allowance(
    tmp_path: Path,
) -> None:
    async with running_world(tmp_path, quota={"dm_credits": 40, "global_daily_usd": 100}) as world:
        elsewhere = p.snowflake()
        for interaction in (
            await from_user_install(world, guild_id=elsewhere, context=0),
            await from_user_install(world, guild_id=None, context=1),
        ):
            answer = await world.private_answer(interaction)
            # The bot cannot post there (no View Channel / Send Messages): no missing-permission refusal.
            assert "on its way" in answer and "it will arrive here" in answer, answer
            # Submitted, on the allowance for use outside servers: not that server's quota, rules or list.
            job = await world.until(lambda job: job.request_id is not None, interaction)
            assert job.guild_id is None
        assert world.sunra.count("submit") == 2


async def test_a_button_refusal_in_japanese_and_a_remix_form_in_german(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        job = await world.ended(await world.animate())
        assert job.state == "delivered"
        other = p.DEFAULT_USER_ID + 1
        world.discord.ensure_member(p.DEFAULT_GUILD_ID, other)

        async def press(action: str, user_id: int, locale: str) -> InteractionRecord:
            click = p.button_click(
                world.discord,
                f"kling:{action}:{job.id}",
                message=job.result_message_id,
                user_id=user_id,
                locale=locale,
            )
            return await world.discord.dispatch_interaction(click)

        refused = await world.private_answer(await press("delete", other, "ja"))
        assert refused == "この動画を削除できるのは、依頼したメンバーかモデレーターだけです。"
        form = await world.discord.wait_for_callback((await press("remix", p.DEFAULT_USER_ID, "de")).id)
        assert form.data["title"] == "Dieses Video remixen"
        labels = [c["label"] for row in form.data["components"] for c in row["components"]]
        assert labels == ["Prompt", "Negativer Prompt", "Dauer (5 oder 10 Sekunden)"]


# ----------------------------------------------------------------------- every command, every sentence

DISCORD_LOCALES = ("de", "fr", "es-ES", "es-419", "pt-BR", "ja")


def _described(node: dict[str, object], path: str) -> list[str]:
    """The places under a registered command (itself, its subcommands, options, choices) that lack a
    localization in one of DISCORD_LOCALES."""
    lacking: list[str] = []
    localized = node.get("description_localizations") or {}
    assert isinstance(localized, dict)
    lacking += [f"{path} description [{code}]" for code in DISCORD_LOCALES if code not in localized]
    lacking += [
        f"{path} description [{code}] too long" for code, text in localized.items() if len(text) > 100
    ]
    for option in node.get("options") or []:  # type: ignore[attr-defined]
        lacking += _described(option, f"{path} {option['name']}")
        for choice in option.get("choices") or []:
            names = choice.get("name_localizations") or {}
            lacking += [
                f"{path} {option['name']}={choice['name']} [{c}]" for c in DISCORD_LOCALES if c not in names
            ]
    return lacking


async def test_every_command_option_and_choice_is_localized_in_every_language(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        commands = world.discord.registered_commands()
        assert {"animate", "quota", "quota-admin", "showcase-admin", "voices", "gallery", "top"} <= {
            c["name"] for c in commands
        }
        lacking = [
            gap for c in commands if c.get("type", 1) == 1 for gap in _described(c, "/" + str(c["name"]))
        ]
        assert lacking == []
        menu = next(c for c in commands if c.get("type") == 3)
        assert set(DISCORD_LOCALES) <= set(menu["name_localizations"])
        quota_admin = next(c for c in commands if c["name"] == "quota-admin")
        cap = next(o for o in quota_admin["options"] if o["name"] == "cap")
        assert cap["description_localizations"]["fr"] == (
            "Crédits que tout le serveur peut dépenser par période (0 = pas de plafond)"
        )
        top = next(c for c in commands if c["name"] == "top")
        period = next(o for o in top["options"] if o["name"] == "period")
        assert [ch["name_localizations"]["ja"] for ch in period["choices"]] == ["今週", "今月", "全期間"]


async def test_an_admin_answer_in_a_french_client(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        payload = p.slash_command(
            world.discord,
            name="quota-admin",
            subcommand="cap",
            options=[p.option("credits", 0)],
            member_permissions=p.DEFAULT_EVERYONE_PERMISSIONS | p.MANAGE_GUILD,
            locale="fr",
        )
        answer = await world.private_answer(await world.discord.dispatch_interaction(payload))
        assert answer == "Ce serveur n'a pas de plafond de crédits."
        payload["id"] = str(p.snowflake())
        payload["locale"] = "en-GB"
        answer = await world.private_answer(await world.discord.dispatch_interaction(payload))
        assert answer == "This server has no credit cap."


async def test_a_result_card_speaks_the_servers_language_whatever_the_members_client(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        payload = p.slash_command(
            world.discord,
            options={"image": world.image(), "prompt": "the *cat* waves"},
            locale="ja",  # the member's own client
            guild_locale="de",  # the server's language: what everyone in the channel reads
        )
        interaction = await world.discord.dispatch_interaction(payload)
        job = await world.ended(interaction)
        assert job.state == "delivered" and job.locale == "de"
        card = world.discord.message(job.result_message_id).message
        text = v2_text(card["components"])
        assert f"🎬 <@{job.user_id}> dein Video ist fertig!" in text
        assert "**Dauer** 5 s · **Ton** an · **Stimmen** keine · **Kosten**" in text
        # The member's prompt is theirs: escaped, never translated.
        assert "the \\*cat\\* waves" in text
        labels = [b.get("label") for b in buttons(card["components"])]
        assert labels[:5] == ["Wiederholen", "Remixen", "Verlängern", "Präsentieren", "Löschen"]
        progress = v2_text(world.discord.message(job.progress_message_id).message["components"])
        assert "**Angefordert von**" in progress and "✅ Fertig" in progress


def test_a_stored_sentence_is_read_back_into_the_readers_language() -> None:
    cancelled = stored_sentence("It was cancelled by <@5>; nothing was charged.")
    assert render(cancelled, "de") == "<@5> hat ihn abgebrochen; es wurde nichts abgerechnet."
    assert (
        render(stored_sentence("The job was cancelled at Kling."), "ja")
        == "ジョブは Kling 側でキャンセルされました。"
    )
    assert stored_sentence("Something only the API said {x}") == "Something only the API said {x}"
    assert not isinstance(stored_sentence("x" * 5000), Message)


async def test_a_showcase_post_speaks_the_servers_language_and_the_gallery_the_members(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as fake:
        fake.guilds[GUILD].data["preferred_locale"] = "fr"  # Server Primary Language: French
        loosen_rate_limits(fake)
        channel = int(fake.add_channel(GUILD, "vitrine")["id"])
        async with running_world(tmp_path, discord=fake, command_guild_ids=[GUILD]) as world:
            await set_channel(world, channel)
            job_id, result_id = await delivered_job(world, "un renard *danse*")
            shared = await press(world, f"kling:show:{job_id}", result_id, locale="de")
            assert shared.startswith(f"Im Showcase in <#{channel}> als #1 gezeigt"), (
                shared
            )  # the presser's own
            post = next(m.message for m in fake.messages if m.channel_id == channel and is_card(m.message))
            assert "## 🏆 Vitrine n°1\n🎬 Une vidéo de" in text_of(post)
            assert "un renard \\*danse\\*" in text_of(post)  # the prompt as typed, escaped
            assert button_labels(post) == ["Voter (0)"]

            gallery = await embed_answer(
                world, p.slash_command(fake, name="gallery", user_id=ALICE, locale="ja")
            )
            assert text_of(gallery).startswith("## ショーケースギャラリー\nショーケース動画（新しい順）。")
            assert button_labels(gallery) == ["前へ", "1 / 1", "次へ"]


async def test_a_job_delivered_to_the_dm_after_a_restart_keeps_the_members_language(tmp_path: Path) -> None:
    """A member's own install (no server's language): the member's Japanese, recorded with the job, is
    what the card in the DM speaks after a restart forgot the interaction."""
    outside = {"quota": {"dm_credits": 100, "global_daily_usd": 100}}
    async with FakeDiscord() as fake, FakeSunra(key=SUNRA_KEY) as sunra:
        loosen_rate_limits(fake)
        channel = p.snowflake()
        async with running_world(tmp_path, discord=fake, sunra=sunra, **outside) as world:
            sunra.next_job(seconds=3.0)
            payload = p.slash_command(
                fake,
                options={"image": world.image(), "prompt": "the cat waves"},
                guild_id=p.snowflake(),  # a server that never added the bot
                channel_id=channel,
                user_install=True,
                context=0,
                locale="ja",
            )
            interaction = await fake.dispatch_interaction(payload)
            await world.until(
                lambda j: j.state == "submitted" and j.progress_message_id is not None, interaction
            )
        async with running_world(tmp_path, discord=fake, sunra=sunra, **outside) as world:
            job = await world.ended(interaction, within=30)
            assert job.state == "delivered" and job.locale == "ja"
            [outcome] = world.outcome_messages(job.id)
            text = v2_text(outcome.message["components"])
            assert f"🎬 <@{job.user_id}> さん、動画ができあがりました！" in text
            assert "**長さ** 5 秒" in text
            assert [b.get("label") for b in buttons(outcome.message["components"])] == [
                "再試行",
                "リミックス",
                "延長",
                "削除",
            ]
