"""The reference side of the APO benchmark (tests/bench/bench_apo.py): runs agentlightning's own
`APO.run` (algorithm/apo/apo.py, unmodified; needs the `poml` package) against our stored over
HTTP with `LightningStoreClient`, so the same runnerd serves its rollouts.

One shim, which does not change the schedule: the reference publishes only the optimised
resource (`{prompt_template}`) per candidate, and expects the agent to know its model some other
way; runnerd's `prompt` agent takes its model from a `main_llm` resource. The store client below
adds the seed's `main_llm` to every `update_resources`, as `trainerd apo` does.

Usage: python bench_apo_ref.py CONFIG.json — CONFIG holds store, llm_url, train, val, seed,
main_llm and the APO parameters; one JSON line with the result goes to stdout. Time spent in
POML rendering (the reference renders each critique/edit prompt with `poml`, which starts a
Node.js process per call) is measured and reported separately."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

import agentlightning.algorithm.apo.apo as apo_mod
from agentlightning.adapter.messages import TraceToMessages
from agentlightning.algorithm.apo import APO
from agentlightning.store.client_server import LightningStoreClient
from agentlightning.types import LLM, PromptTemplate
from openai import AsyncOpenAI


def main() -> int:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    main_llm = LLM(**cfg["main_llm"])

    stats = {"poml_calls": 0, "poml_seconds": 0.0, "evaluations": 0, "wait_polls": 0}

    class Store(LightningStoreClient):
        async def update_resources(self, resources_id, resources):
            stats["evaluations"] += 1  # APO publishes once per evaluation
            return await super().update_resources(resources_id, {**resources, "main_llm": main_llm})

        async def wait_for_rollouts(self, *a, **kw):
            stats["wait_polls"] += 1
            return await super().wait_for_rollouts(*a, **kw)
    real_poml = apo_mod.poml.poml

    def timed_poml(*a, **kw):
        t = time.monotonic()
        try:
            return real_poml(*a, **kw)
        finally:
            stats["poml_calls"] += 1
            stats["poml_seconds"] += time.monotonic() - t

    apo_mod.poml.poml = timed_poml

    async def run():
        store = Store(cfg["store"])
        client = AsyncOpenAI(base_url=cfg["llm_url"], api_key="bench", max_retries=0)
        algo = APO(client, gradient_model="critic-model", apply_edit_model="editor-model",
                   diversity_temperature=1.0, gradient_batch_size=cfg["gradient_batch_size"],
                   val_batch_size=cfg["val_batch_size"], beam_width=cfg["beam_width"],
                   branch_factor=cfg["branch_factor"], beam_rounds=cfg["rounds"])
        adapter = TraceToMessages()  # the algorithm keeps only a weak reference
        algo.set_store(store)
        algo.set_adapter(adapter)
        algo.set_initial_resources(
            {"prompt_template": PromptTemplate(template=cfg["seed"], engine="f-string")})
        t0 = time.monotonic()
        await algo.run(train_dataset=cfg["train"], val_dataset=cfg["val"])
        wall = time.monotonic() - t0
        await store.close()
        return {"wall_seconds": wall, "best_score": algo._history_best_score,
                "best_version": algo._history_best_version,
                "best_text": algo.get_best_prompt().template,
                "versions": algo._version_counter, **stats}

    print(json.dumps(asyncio.run(run())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
