#!/usr/bin/env python3
"""Writes a synthetic AWS CUR 2.0 CSV (Amazon Bedrock usage lines) for benchmarks.

    scripts/gen_cur.py LINES MONTH OUT.csv      e.g. scripts/gen_cur.py 1000000 2026-10 cur.csv

Hourly lines over the month for many IAM principals and four token types of one model, in
the column layout of the sample (../shared/data/samples/bedrock_cur2.csv). Costs are
usage_amount x rate, exact (decimal arithmetic). Deterministic: the same arguments give the
same file.
"""
import calendar
import sys
from decimal import Decimal

HEADER = ("identity_line_item_id,identity_time_interval,bill_invoice_id,bill_invoicing_entity,"
          "bill_billing_entity,bill_bill_type,bill_payer_account_id,bill_payer_account_name,"
          "bill_billing_period_start_date,bill_billing_period_end_date,line_item_usage_account_id,"
          "line_item_usage_account_name,line_item_line_item_type,line_item_usage_start_date,"
          "line_item_usage_end_date,line_item_product_code,line_item_usage_type,line_item_operation,"
          "line_item_availability_zone,line_item_resource_id,line_item_usage_amount,"
          "line_item_currency_code,line_item_unblended_rate,line_item_unblended_cost,"
          "line_item_blended_rate,line_item_blended_cost,line_item_line_item_description,"
          "line_item_legal_entity,line_item_iam_principal,product_servicecode,product_sku,"
          "product_product_family,product_region_code,product,pricing_unit,pricing_term,"
          "pricing_public_on_demand_rate,pricing_public_on_demand_cost,resource_tags")

TYPES = [("input-tokens", Decimal("0.001")), ("output-tokens", Decimal("0.005")),
         ("cache-read-input-token-count", Decimal("0.0001")),
         ("cache-write-input-token-count", Decimal("0.00125"))]


def main():
    lines, month, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    year, mon = int(month[:4]), int(month[5:7])
    days = calendar.monthrange(year, mon)[1]
    hours = days * 24
    per_hour = -(-lines // hours)
    principals = -(-per_hour // len(TYPES))
    nxt = f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"
    bp = f"{month}-01T00:00:00Z,{nxt}-01T00:00:00Z"
    with open(out, "w", buffering=1 << 20) as f:
        f.write(HEADER + "\n")
        n = 0
        for h in range(hours):
            d, hh = divmod(h, 24)
            s = f"{month}-{d + 1:02d}T{hh:02d}:00:00Z"
            e = (f"{month}-{d + 1:02d}T{hh + 1:02d}:00:00Z" if hh < 23 else
                 (f"{month}-{d + 2:02d}T00:00:00Z" if d + 1 < days else f"{nxt}-01T00:00:00Z"))
            for p in range(principals):
                team = ("search", "support", "analytics", "growth", "platform")[p % 5]
                for t, rate in TYPES:
                    if n >= lines:
                        break
                    amount = Decimal((n * 7919) % 5000 + 1) / 10
                    cost = amount * rate
                    ut = f"USE1-Claude4.5Haiku-{t}"
                    f.write(f"{n:040x},{s}/{e},,\"Amazon Web Services, Inc.\",AWS,Anniversary,"
                            f"111122223333,acme-payer,{bp},444455556666,acme-genai-prod,Usage,{s},{e},"
                            f"AmazonBedrockService,{ut},Usage,,arn:aws:bedrock:us-east-1:444455556666:"
                            f"application-inference-profile/p{p:05d},{amount},USD,{rate},{cost},{rate},"
                            f"{cost},${rate} per 1K tokens for {ut},\"Amazon Web Services, Inc.\","
                            f"arn:aws:sts::444455556666:assumed-role/{team}-role-{p:04d}/i-0,"
                            f"AmazonBedrockService,SKU{p % 4},,us-east-1,"
                            f"\"{{\"\"model\"\":\"\"Claude4.5Haiku\"\"}}\",1K tokens,OnDemand,{rate},{cost},"
                            f"\"{{\"\"user_team\"\":\"\"{team}\"\"}}\"\n")
                    n += 1


if __name__ == "__main__":
    main()
