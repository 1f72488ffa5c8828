"""Realistic demo tasks: a mix of types, statuses, tags, errors and progress over weeks.

Rows are built to the same rules the recorder keeps (a finished task has `finished_at`, a
running one a `started_at`, timestamps in order, progress within 0..1) and loaded in bulk, so
ten million tasks take minutes rather than hours.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.bulk import bulk_loader, indexes_built_at_the_end
from app.error_groups import error_group
from app.models import MODEL_FOR_TYPE, Status, TaskModel
from app.schema import refresh_statistics
from app.timeouts import without_statement_limit

TAGS = [f"exp-{n}" for n in range(1, 41)] + [
    "nightly",
    "baseline",
    "ablation-lr",
    "ablation-data",
    "prod",
    "customer-acme",
    "customer-globex",
    "release-2.3",
]
BASE_MODELS = [
    "meta-llama/Llama-3.1-8B",
    "mistralai/Mistral-7B-v0.3",
    "Qwen/Qwen2.5-7B",
    "google/gemma-2-9b",
    "microsoft/phi-3-mini-4k",
    "EleutherAI/pythia-1.4b",
]
DATASETS = [
    "support-tickets-2026",
    "code-review-comments",
    "medical-qa-de",
    "legal-contracts-en",
    "product-descriptions",
    "customer-chats-fr",
    "math-word-problems",
]
BENCHMARKS = ["mmlu", "hellaswag", "gsm8k", "truthfulqa", "humaneval", "arc-challenge"]
ERRORS = {
    "model_upload": [
        "HTTP 404 from huggingface.co: repository not found or gated",
        "checksum mismatch on model-00002-of-00004.safetensors",
        "GitHub release asset exceeds the 50 GB upload limit",
    ],
    "dataset_upload": [
        "row 18342: expected 3 columns, found 5",
        "UnicodeDecodeError: invalid start byte 0xff at offset 1048576",
        "dataset is gated: accept the terms on the hub first",
    ],
    "training": [
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)",
        "loss became NaN at step 1200; lower the learning rate",
        "worker lost: node gpu-17 stopped responding",
    ],
    "evaluation": [
        "benchmark harness timed out after 3600 s",
        "tokenizer mismatch: model vocabulary 32000, checkpoint 32002",
    ],
    "synthesis": [
        "generator returned 0 valid rows after 5 retries",
        "rate limit exceeded on the generation endpoint",
    ],
}
RECENT = timedelta(days=1)
# Typical run time of each kind of task, in minutes (min, max).
DURATION_MINUTES = {
    "model_upload": (1, 40),
    "dataset_upload": (1, 20),
    "training": (30, 720),
    "evaluation": (5, 120),
    "synthesis": (10, 240),
}


def type_fields(task_type: str, rng: random.Random, finished_ok: bool) -> dict[str, Any]:
    """The columns only one kind of task has, chosen as the platform would fill them."""
    model = rng.choice(BASE_MODELS)
    dataset = rng.choice(DATASETS)
    if task_type == "model_upload":
        source = rng.choice(["huggingface", "huggingface", "github", "local"])
        uri = {
            "huggingface": f"hf://{model}",
            "github": f"https://github.com/acme-ml/{model.split('/')[1].lower()}",
            "local": f"/uploads/{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}.safetensors",
        }[source]
        return {
            "source": source,
            "model_name": model,
            "source_uri": uri,
            "revision": rng.choice([None, "main", "v1.0", "refs/pr/12"]),
            "size_bytes": rng.randint(1, 40) * 2**30 if finished_ok else None,
        }
    if task_type == "dataset_upload":
        source = rng.choice(["huggingface", "local"])
        return {
            "source": source,
            "dataset_name": dataset,
            "source_uri": f"hf://datasets/acme/{dataset}"
            if source == "huggingface"
            else f"/uploads/{dataset}.parquet",
            "row_count": rng.randint(1_000, 5_000_000) if finished_ok else None,
            "size_bytes": rng.randint(1, 5000) * 2**20 if finished_ok else None,
        }
    if task_type == "training":
        method = rng.choice(["lora", "lora", "qlora", "full"])
        return {
            "base_model": model,
            "dataset_name": dataset,
            "method": method,
            "epochs": rng.randint(1, 5),
            "output_model": f"acme/{model.split('/')[1]}-{dataset}-{method}"
            if finished_ok
            else None,
        }
    if task_type == "evaluation":
        metrics = {"accuracy": round(rng.uniform(0.3, 0.9), 4)} if finished_ok else None
        return {
            "model_name": model,
            "dataset_name": dataset,
            "benchmark": rng.choice(BENCHMARKS),
            "metrics": metrics,
        }
    target = rng.choice([1_000, 5_000, 10_000, 50_000])
    return {
        "generator_model": model,
        "source_dataset": rng.choice([None, dataset]),
        "output_dataset": f"synthetic-{dataset}",
        "target_rows": target,
        "generated_rows": target if finished_ok else None,
    }


def demo_created_at(now: datetime, span: timedelta, rng: random.Random) -> datetime:
    """When a demo task was created.

    A fifth of the tasks come from the last day, the rest spread evenly over the span:
    recent work is busier, yet the newest minutes are not all queued tasks.
    """
    recent = rng.random() < 0.2
    return now - (RECENT if recent else span) * rng.random() - timedelta(seconds=1)


def demo_task(task_type: str, now: datetime, created: datetime, rng: random.Random) -> dict:
    """One task created at `created`, at a random point of its life since."""
    age = now - created
    low, high = DURATION_MINUTES[task_type]
    duration = timedelta(minutes=rng.uniform(low, high))
    queue_wait = timedelta(seconds=rng.uniform(1, 600))
    row: dict[str, Any] = {
        "id": uuid.UUID(int=rng.getrandbits(128), version=4),
        "tag": rng.choice(TAGS) if rng.random() < 0.7 else None,
        "created_at": created,
        "started_at": None,
        "finished_at": None,
        "progress": None,
        "error_msg": None,
        "error_group": None,
    }
    if age < queue_wait or (age < timedelta(hours=2) and rng.random() < 0.1):
        status = Status.QUEUED
    else:
        started = created + min(queue_wait, age / 2)
        row["started_at"] = started
        outcome = rng.random()
        if outcome < 0.06:
            status, finished = Status.CANCELLED, started + duration * rng.random()
        elif outcome < 0.16:
            status, finished = Status.FAILED, started + duration * rng.random()
        else:
            status, finished = Status.COMPLETED, started + duration
        if finished >= now:
            status = Status.RUNNING
            row["progress"] = round(min(0.99, (now - started) / duration), 3)
        else:
            row["finished_at"] = finished
            if status is Status.COMPLETED:
                row["progress"] = 1.0
            elif status is Status.FAILED:
                row["error_msg"] = rng.choice(ERRORS[task_type])
                row["error_group"] = error_group(row["error_msg"])
                row["progress"] = round(rng.random(), 3)
    row["status"] = status.value
    row["updated_at"] = row["finished_at"] or row["started_at"] or created
    row |= type_fields(task_type, rng, finished_ok=status is Status.COMPLETED)
    return row


def demo_rows(
    model: TaskModel, count: int, now: datetime, span: timedelta, rng: random.Random
) -> Iterator[dict]:
    """`count` demo rows for one table, oldest first.

    A module writes a task when it is created, so a real table holds its rows roughly in
    creation order, and an engine's reads follow from that: on PostgreSQL an index-only
    scan checks the visibility map of each row's page, and rows laid out at random make a
    scan of a time range jump between pages of the map (at ten million tasks, a capped
    count's 10,001 entries cost 4,615 buffer reads instead of 31).
    """
    moments = sorted(demo_created_at(now, span, rng) for _ in range(count))
    for created in moments:
        yield demo_task(model.task_type, now, created, rng)


def seed_demo(
    engine: sa.Engine,
    tasks: int,
    now: datetime,
    *,
    weeks: int = 6,
    seed: int | None = None,
    on_progress: Callable[[int], None] = lambda _: None,
) -> None:
    """Insert `tasks` demo tasks spread over the five tables and the last `weeks` weeks.

    Loaded in bulk (see app/bulk.py): into empty tables, ten million take minutes, and no
    statement limit applies to the load or to the index builds after it.
    """
    rng = random.Random(seed)
    span = timedelta(weeks=weeks)
    models = list(MODEL_FOR_TYPE.values())
    shares = [tasks // len(models) + (i < tasks % len(models)) for i in range(len(models))]
    load = bulk_loader(engine, on_progress)
    with without_statement_limit(engine):
        with indexes_built_at_the_end(engine):
            for model, share in zip(models, shares, strict=True):
                load(model, demo_rows(model, share, now, span, rng))
        # Once the search objects are back: on PostgreSQL adding their generated column
        # rewrites each table, and only a VACUUM after that marks its pages all-visible,
        # which every index-only scan (the capped counts) relies on.
        refresh_statistics(engine)
