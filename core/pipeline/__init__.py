"""One request pipeline for every API (chat, messages, embeddings, and any added later).

    read -> validate -> resolve -> plan -> admit -> dispatch -> encode -> account

stages.py holds the stages (named objects, shared by every API), account.py the last one,
api.py what an API supplies (`ApiSpec`: its validator, planner variant, token estimate,
dispatch mode, encoder and error envelope), exchange.py the per-request state the stages
hand each other, and run.py the `Pipeline` that runs them and makes sure every admitted
request is accounted exactly once.
"""

from core.pipeline.account import Account
from core.pipeline.api import ApiSpec
from core.pipeline.exchange import Exchange
from core.pipeline.run import Pipeline
from core.pipeline.stages import standard_stages

__all__ = ["Account", "ApiSpec", "Exchange", "Pipeline", "standard_stages"]
