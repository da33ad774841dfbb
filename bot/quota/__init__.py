"""Credits, as a package with one import path per name (nothing is re-exported here):

- `bot.quota.spending`  QuotaService: quote, reserve, commit, refund, a member's balance and report
- `bot.quota.checks`    the refusal checks (QuotaRefused) and a member's Balance
- `bot.quota.admin`     the /quota-admin changes QuotaService mixes in, each audited
- `bot.quota.rules`     what needs no database: settings, prices, periods, a server's policy
"""
