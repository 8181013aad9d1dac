"""After a mixed load: what must be zero, read back from the server once the clients have gone.

- responses >= 500;
- jobs that timed out though their own engine time was far below the timeout ("failed for
  another job's time");
- images whose board no longer exists;
- HTTP requests still being handled (the ``cofounder_http_requests_in_flight`` gauge);
- jobs of the run that did not end within the grace period.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

import httpx

from cofounder_agent.bench.load import LoadConfig, State, drive, http_client

TERMINAL = {"succeeded", "failed", "cancelled"}
GAUGE = "cofounder_http_requests_in_flight"
# "far below": a job whose own engine time is under this share of the timeout did not run out of it.
FAR_BELOW = 0.5
_TIMED_OUT = re.compile(r"timed out after ([0-9.]+) ?s")
_OUTCOMES = ("2xx", "3xx", "4xx", "5xx", "left", "timeout", "error")


async def run_jobs(http: httpx.AsyncClient, config: LoadConfig, known: list[str]) -> list[dict[str, Any]]:
    """Every job of the run: those listed with the run's tag in the prompt, plus those it submitted."""
    found: dict[str, dict[str, Any]] = {}
    for page in range(100):  # at most 10,000 jobs on the server are looked through
        response = await http.get("/v1/jobs", params={"limit": 100, "offset": page * 100})
        response.raise_for_status()
        data = response.json()["data"]
        found |= {j["id"]: j for j in data if config.tag in str(j["recipe"].get("prompt"))}
        if len(data) < 100:
            break
    for job_id in set(known) - set(found):
        response = await http.get(f"/v1/jobs/{job_id}")
        if response.status_code == 200:
            found[job_id] = response.json()
    return list(found.values())


async def settle(http: httpx.AsyncClient, config: LoadConfig, state: State) -> tuple[list[dict[str, Any]], float]:
    """Wait until every job of the run has ended, or the grace period is over; return them and the wait."""
    start = time.monotonic()
    while True:
        jobs = await run_jobs(http, config, state.jobs)
        waited = time.monotonic() - start
        if all(j["status"] in TERMINAL for j in jobs) or waited > config.grace_s:
            return jobs, waited
        await asyncio.sleep(1.0)


def _engine_seconds(job: dict[str, Any]) -> float | None:
    """The job's own engine time, when its record states one (a numeric field named for the engine)."""
    for key, value in job.items():
        if "engine" in key and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _shape(job: dict[str, Any]) -> tuple[Any, ...]:
    recipe = job["recipe"]
    keys = ("width", "height", "steps", "num_images", "refiner")
    return (*(str(recipe.get(k)) for k in keys), len(recipe.get("stages") or []))


def timed_out_check(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Timed-out jobs whose own engine time was far below the timeout, and how that was told.

    A job's own engine time is the number its record states (a field named ``engine…``) if
    it has one; otherwise the median engine time (the sum of its results' ``timings.total_s``,
    which the engine measures around its own work) of this run's succeeded jobs of the same
    size, steps, image count, refiner and stages. ``seconds`` (started to finished) is not
    used: it includes any wait for the engine, which is the very thing being looked for.
    The timeout is read from the error ("timed out after 10 s").
    """
    reference: dict[tuple[Any, ...], list[float]] = {}
    for job in jobs:
        if job["status"] == "succeeded" and job.get("results"):
            engine = sum(float(r.get("timings", {}).get("total_s", 0.0)) for r in job["results"])
            reference.setdefault(_shape(job), []).append(_engine_seconds(job) or engine)
    timed_out = [j for j in jobs if j["status"] == "failed" and _TIMED_OUT.search(j.get("error") or "")]
    seen: list[dict[str, Any]] = []
    for job in timed_out:
        match = _TIMED_OUT.search(job["error"])
        assert match is not None
        own, how = _engine_seconds(job), "job record"
        if own is None and reference.get(_shape(job)):
            own, how = statistics.median(reference[_shape(job)]), "same-shape median"
        recipe = job["recipe"]
        seen.append(
            {
                "job_id": job["id"],
                "size": f"{recipe.get('width')}x{recipe.get('height')}",
                "steps": recipe.get("steps"),
                "engine_s": None if own is None else round(own, 3),
                "engine_from": how if own is not None else "unknown",
                "seconds": job.get("seconds"),
                "error": job["error"],
                "far_below": own is not None and own < FAR_BELOW * float(match.group(1)),
            }
        )
    flagged = [entry for entry in seen if entry["far_below"]]
    unknown = sum(entry["engine_s"] is None for entry in seen)
    return {"timed_out": seen, "flagged": flagged, "unknown": unknown}


async def orphan_images(http: httpx.AsyncClient, image_ids: set[str]) -> dict[str, Any]:
    """Images the run saw whose ``board_id`` names a board that no longer exists."""
    response = await http.get("/v1/boards")
    response.raise_for_status()
    boards = {b["id"] for b in response.json()["data"]}
    limit = asyncio.Semaphore(8)
    orphans: list[dict[str, str]] = []
    counts = {"checked": 0, "gone": 0}

    async def look(image_id: str) -> None:
        async with limit:
            got = await http.get(f"/v1/images/{image_id}/metadata")
        if got.status_code == 404:
            counts["gone"] += 1
            return
        got.raise_for_status()
        counts["checked"] += 1
        board = got.json().get("board_id")
        if board is not None and board not in boards:
            orphans.append({"image_id": image_id, "board_id": board, "source": str(got.json().get("source"))})

    await asyncio.gather(*(look(i) for i in sorted(image_ids)[:5000]))
    return {**counts, "orphans": orphans}


async def requests_in_flight(http: httpx.AsyncClient, wait_s: float = 10.0) -> int | None:
    """The gauge less the scrape itself, polled until it reads 0 or ``wait_s`` passes; None if absent."""
    deadline = time.monotonic() + wait_s
    while True:
        response = await http.get("/metrics")
        match = re.search(rf"^{GAUGE}\s+(\S+)$", response.text, re.MULTILINE)
        if response.status_code != 200 or match is None:
            return None
        others = round(float(match.group(1))) - 1
        if others <= 0 or time.monotonic() > deadline:
            return others
        await asyncio.sleep(0.5)


async def run_load(url: str, config: LoadConfig) -> dict[str, Any]:
    """Drive the load, let the server settle, run the checks; the report as plain data."""
    tally, state, ran_s = await drive(url, config)
    async with http_client(url, config) as http:
        jobs, waited = await settle(http, config, state)
        for job in jobs:
            state.images.update(job.get("image_ids") or [])
        timeouts = timed_out_check(jobs)
        orphans = await orphan_images(http, state.images)
        in_flight = await requests_in_flight(http)
    stuck = [j["id"] for j in jobs if j["status"] not in TERMINAL]
    server_errors = sum(c["5xx"] for c in tally.routes.values())
    checks: dict[str, int | None] = {
        "responses_5xx": server_errors,
        "failed_for_another_jobs_time": len(timeouts["flagged"]),
        "orphan_images": len(orphans["orphans"]),
        "requests_in_flight_after": in_flight,
        "jobs_not_terminal": len(stuck),
    }
    notes = [f"{e}" for e in tally.server_errors[:5]] + [f"script error: {e}" for e in tally.script_errors[:5]]
    if in_flight is None:
        notes.append(f"GET /metrics has no {GAUGE} gauge: requests left after the clients cannot be counted")
    if timeouts["unknown"]:
        notes.append(f"{timeouts['unknown']} timed-out job(s) had no engine time to compare (no same-shape success)")
    return {
        "url": url,
        "tag": config.tag,
        "config": {k: v for k, v in vars(config).items() if k != "api_key"},
        "ran_s": round(ran_s, 1),
        "settle_s": round(waited, 1),
        "routes": [{"route": r, **{o: c[o] for o in _OUTCOMES}} for r, c in sorted(tally.routes.items())],
        "jobs": dict(sorted({s: sum(j["status"] == s for j in jobs) for s in {j["status"] for j in jobs}}.items())),
        "checks": checks,
        "ok": all(v == 0 for v in checks.values() if v is not None),
        "details": {
            "timed_out_jobs": len(timeouts["timed_out"]),
            "timed_out": timeouts["timed_out"][:20],
            "failed_for_another_jobs_time": timeouts["flagged"][:20],
            "images_checked": orphans["checked"],
            "images_gone": orphans["gone"],
            "orphan_images": orphans["orphans"][:20],
            "jobs_not_terminal": stuck[:20],
            "codes_4xx": dict(tally.codes.most_common()),
            "samples_4xx": tally.samples,
            "server_errors": tally.server_errors,
            "script_errors": tally.script_errors[:20],
        },
        "notes": notes,
    }


def render(report: dict[str, Any]) -> str:
    """The report as text: the routes table, the job counts, then each check against 0."""
    from cofounder_agent.bench.common import table

    lines = [f"== mixed load on {report['url']} ({report['tag']}): {report['ran_s']} s, settled in "]
    lines[0] += f"{report['settle_s']} s =="
    lines += [table(report["routes"]), "", "jobs: " + ", ".join(f"{k} {v}" for k, v in report["jobs"].items())]
    lines.append("4xx: " + (", ".join(f"{k} x{v}" for k, v in report["details"]["codes_4xx"].items()) or "none"))
    lines += [f"  {k}: {v[:160]}" for k, v in list(report["details"]["samples_4xx"].items())[:3]]
    lines.append(f"timed-out jobs: {report['details']['timed_out_jobs']}")
    for entry in report["details"]["timed_out"][:5]:
        lines.append(f"  {entry['size']}/{entry['steps']} steps: engine ~{entry['engine_s']} s")
        lines[-1] += f" ({entry['engine_from']}), {entry['seconds']} s started to finished: {entry['error']}"
    for name, value in report["checks"].items():
        verdict = "n/a" if value is None else "ok" if value == 0 else "FAIL"
        lines.append(f"{name}: {'absent' if value is None else value} (must be 0) {verdict}")
    lines += [f"note: {n}" for n in report["notes"]]
    for key in ("failed_for_another_jobs_time", "orphan_images", "jobs_not_terminal"):
        lines += [f"{key}: {item}" for item in report["details"][key][:5]]
    lines.append("RESULT: " + ("ok" if report["ok"] else "FAIL"))
    return "\n".join(lines)
