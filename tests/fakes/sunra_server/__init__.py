"""A fake sunra.ai queue API (Kling 2.6 Pro image-to-video) on 127.0.0.1, over real HTTP.

It speaks the protocol bot/sunra.py talks to (submit, status, status stream, result, cancel, storage
upload) and lets a test script every failure the real service can produce. Its routes, bodies, errors
and submit checks come from bot/simulator/protocol.py, which it shares with the offline simulator
(tests/test_sunra_contract.py holds both to one contract); it imports nothing else of the bot, so it
checks what the bot sends the way sunra would, not the way the bot's client thinks it should.

In-process use (pytest)::

    from tests.fakes.sunra_server import FakeSunra

    async with FakeSunra(key="test-key") as fake:          # random port on 127.0.0.1
        client = SunraClient(fake.url, "test-key")          # fake.url is the {api} base (…/v1)
        ...
        assert fake.count("submit") == 1 and len(fake.jobs) == 1 and not fake.leaked_auth

Subprocess use (other processes, benchmarks)::

    python -m tests.fakes.sunra_server --port 0 --key K [--job-seconds S] [--queue-seconds S]
    # stdout line 1 is the API base URL; serves until SIGTERM/SIGINT.

or ``async with FakeSunraProcess(key="K", job_seconds=1.0) as proc:`` (``proc.url``, ``await
proc.control("fault", {...})``). The control API (JSON, no auth) is described at :meth:`_setup_routes`.

URLs. ``fake.root`` is ``http://127.0.0.1:PORT``; ``fake.url`` = ``root + "/v1"`` (the API base). Files
(uploads and videos) live under ``root + "/files/..."``, standing in for sunra's storage/CDN host: the
key must never be sent there, and any ``Authorization`` header received there sets ``fake.leaked_auth``.

Routes and their names (used by :meth:`FakeSunra.count`, :meth:`FakeSunra.fail_next`, ``requests``)::

    POST {api}/queue/kling/kling-v2.6-pro/image-to-video   submit
    GET  {api}/queue/requests/{id}/status                 status
    GET  {api}/queue/requests/{id}/status/stream          stream   (server-sent events)
    GET  {api}/queue/requests/{id}                        result
    PUT  {api}/queue/requests/{id}/cancel                 cancel
    POST {api}/storage/upload/initiate                    upload_initiate
    PUT  {root}/files/upload/{token}                      upload_put
    GET  {root}/files/uploads/{token}/{file_name}         file
    GET  {root}/files/video/{id}.mp4                      video

API routes need ``Authorization: Key <fake.key>`` (else 401 ``UNAUTHORIZED``). Errors have sunra's shape
``{"error": {"code", "message", "details"}}``. Submits are validated like the real API (prompt 1-2500
chars, start_image_url, negative_prompt <= 2500, duration "5"/"10", generate_audio bool, voice_ids <= 2
strings, unknown fields refused): 422 ``VALIDATION_ERROR`` with one detail per problem.

A job's life is driven by time (``time.monotonic``), so nothing has to be stepped:

* ``IN_QUEUE`` for ``queue_seconds`` (default a third of ``job_seconds``), ``queue_position`` counting
  down from ``queue_length`` (default 3) to 0;
* ``IN_PROGRESS`` until ``job_seconds`` (default 0.3 s) after the submit, with one more ``logs`` line
  ({message, timestamp}) every quarter of the phase;
* ``COMPLETED`` with ``success: true`` and a result ``{"video": {"url": "{root}/files/video/{id}.mp4",
  "content_type": "video/mp4", "file_name": "{id}.mp4", "file_size": N}}``; the video's N bytes
  (``video_size``, default 200 KB; deterministic, see :func:`video_bytes`; generated while streaming, so
  gigabytes cost no memory) are served at that URL once the job is done.
* A failing job ends ``{"status": "COMPLETED", "success": false, "error": {"code": "PREDICTION_FAILED",
  "message", "details": {"code", "message", "reason", "retryable"}}}`` and its result answers 200 with
  that error object. A cancelled job answers ``{"status": "CANCELLED"}`` and its result 400.

Scripting (all in-process methods; every one also works through the control API):

* Per job, by plan rules consumed at submit (the one mechanism; a rule may match on a prompt
  substring so concurrent submits stay deterministic)::

      fake.next_job(seconds=2.0, queue_seconds=0.5, video_size=5_000_000)   # the next job only
      fake.fail_next_job(reason="NSFW content", retryable=False)            # the next job fails
      fake.plan_jobs(JobPlan(fail=JobFailure("busy", retryable=True)), prompt_contains="[fail]", times=None)

* Per request, by faults consumed in order per route::

      fake.fail_next("submit", 429, retry_after=2)   # answer 429 with Retry-After: 2, no job made
      fake.fail_next("submit", 500, times=2)         # 500 twice, no job made
      fake.fail_next("submit", 500, after_processing=True)   # the job IS made, then 500: uncertain
      fake.hang_next_submit(5.0)                      # the job is made, the answer comes 5 s late
      fake.fail_next("status", 503, times=3) ; fake.fail_next("status", malformed=True)
      fake.fail_next("result", 500) ; fake.fail_next("upload_put", 503) ; fake.fail_next("video", 500)
      fake.fail_next("video", cut_after=100_000)     # the download is cut off after 100 KB

* Switches: ``fake.stream_enabled = False`` (the stream route answers 404), ``fake.stream_drop_after = n``
  (each stream connection is cut after n events), ``fake.stream_stall_after = n`` (after n events a stream
  stays open with keep-alives every ``stream_keepalive_seconds`` and never sends another, not even the
  final one; ``stream_ping_events`` sends them as ``{"type": "ping"}`` events instead of comments),
  ``fake.status_extra = {"logs": "text", ...}`` (merged into every status answer and event: drift),
  ``fake.key = "other"`` or ``fake.reject_key()`` (the
  bot's key becomes bad: 401), ``fake.balance = 0`` (402 ``INSUFFICIENT_BALANCE``; a number counts down
  by one per job; None = unlimited), ``fake.submit_rate_limit = (10, 1.0)`` (sliding-window 429 with
  ``Retry-After`` and ``x-ratelimit-*``; ``fake.rate_limit_status = 403`` answers it the way sunra's queue
  documentation says: 403 ``RATE_LIMIT_EXCEEDED``), ``fake.reject_key(403)`` (a 403 that rejects the
  key), ``fake.send_video_length = False`` (videos chunked, without Content-Length),
  ``fake.job_seconds`` / ``queue_seconds`` / ``queue_length`` / ``video_size``.
* Hostile storage: ``fake.upload_url_override = url`` (upload tickets name it), ``fake.video_redirect =
  url`` (every video answers 302 to it); a job's ``video.url`` is set with ``JobPlan(result=...)``.
* Cancels: ``fake.cancel_mode = "requested"`` answers ``CANCELLATION_REQUESTED`` and the job ends
  ``CANCELLED`` ``fake.cancel_seconds`` later; ``"ignored"`` answers the same and the job completes as
  planned (a video, billed).
* Per existing job: ``fake.force_status(id, {"status": "SOMETHING_NEW"})`` (status and stream answer
  that object until ``force_status(id, None)``), ``fake.force_result(id, 500, body)``, ``fake.finish(id)``
  (complete now).

Records (oldest first): ``fake.requests`` (:class:`RecordedRequest`: route, method, path, request_id,
has_authorization, status, at), ``fake.submissions`` (every JSON body received at submit, even refused
ones), ``fake.jobs`` (request id → :class:`FakeJob`), ``fake.uploads`` (file_url → :class:`Upload`),
``fake.leaked_auth``; ``fake.count(route, request_id=None)``; ``await fake.wait_until(predicate)``.

Layout: ``_jobs.py`` (defaults, records, plans, faults, FakeJob, video bytes), ``_routes.py`` (the HTTP
side: auth, faults, the nine routes), ``_fake.py`` (FakeSunra: settings, scripting, records, control
API), ``_process.py`` (FakeSunraProcess and ``python -m tests.fakes.sunra_server``).
"""

from __future__ import annotations

from bot.simulator.protocol import error_body
from tests.fakes.sunra_server._fake import FakeSunra
from tests.fakes.sunra_server._jobs import (
    FakeJob,
    Fault,
    JobFailure,
    JobPlan,
    RecordedRequest,
    Upload,
    video_bytes,
    video_chunks,
    video_piece,
)
from tests.fakes.sunra_server._process import FakeSunraProcess

__all__ = [
    "FakeJob",
    "FakeSunra",
    "FakeSunraProcess",
    "Fault",
    "JobFailure",
    "JobPlan",
    "RecordedRequest",
    "Upload",
    "error_body",
    "video_bytes",
    "video_chunks",
    "video_piece",
]
