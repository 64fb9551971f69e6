"""Asks a `trainerd serve` policy server a question with the openai SDK and checks that the
returned token ids decode to the returned text. Usage: python chat.py URL [QUESTION]"""
import sys

import openai

url = sys.argv[1]
question = sys.argv[2] if len(sys.argv) > 2 else "What is the capital of France?"
c = openai.OpenAI(base_url=url, api_key="none")
r = c.chat.completions.create(model="policy", messages=[{"role": "user", "content": question}],
                              temperature=0, max_tokens=48, logprobs=True)
ch = r.choices[0]
print(ch.message.content)
print("prompt tokens:", len(r.model_extra["prompt_token_ids"]),
      "| response ids:", ch.model_extra["token_ids"], "| finish:", ch.finish_reason)
print("sum of log-probs: %.3f" % sum(t.logprob for t in ch.logprobs.content))
