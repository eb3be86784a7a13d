-- wrk script for the warm-distinct target of benches/e2e/run.sh (run with -t1):
--
--   wrk -t1 -c32 -d10s --latency -s rotate.lua http://127.0.0.1:PORT/api TOKENS_FILE
--
-- TOKENS_FILE holds one PAT per line, each verified once before the run (so every request is
-- warm). Request n presents token n mod N, so concurrent requests present different tokens
-- owned by different users: strict mode's batcher cannot share one read between them, which
-- is the case that (d) and (e), one token each, do not show. done() prints the same line as
-- report.lua; status_errors counts responses that are not 200.
local tokens, n, i = {}, 0, 0
bad = 0

function init(args)
  local f = assert(io.open(args[1], "r"), "cannot open tokens file " .. tostring(args[1]))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      tokens[n] = line
    end
  end
  f:close()
  assert(n > 0, "no tokens in " .. args[1])
end

function request()
  i = i % n + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end

function response(status)
  if status ~= 200 then
    bad = bad + 1
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

done = function(summary, latency, requests)
  local e = summary.errors
  local status_errors = 0
  for _, t in ipairs(threads) do
    status_errors = status_errors + (t:get("bad") or 0)
  end
  io.write(string.format(
    "E2E_RESULT requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f status_errors=%.0f"
      .. " connect=%.0f read=%.0f write=%.0f timeout=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    status_errors, e.connect, e.read, e.write, e.timeout))
end
