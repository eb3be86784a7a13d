-- wrk script for the cold-PAT target of benches/e2e/run.sh (run with -t1).
--
--   wrk -t1 -c32 -d10s --latency -s cold.lua http://127.0.0.1:PORT/api TOKENS_FILE
--
-- TOKENS_FILE holds one PAT per line. Each request presents the next token, so every token is
-- presented exactly once and every request is a cache miss (a full bcrypt verification).
-- When the tokens run out, delay() parks each connection instead of letting it send again,
-- and the response that answers the last request in flight stops the thread's event loop:
-- no token is ever reused and every token sent is counted. Because wrk's own req/s divides
-- by the whole -d
-- duration, done() reports the rate over the time actually spent: from the first request to
-- the last response (monotonic clock through LuaJIT's ffi).
--
-- done() prints:
--   E2E_RESULT requests=.. duration_us=.. p50_us=.. p99_us=.. status_errors=.. ...
--   E2E_COLD ok=.. non200=.. sent=.. tokens=.. span_us=.. statuses=<status>x<count>,...

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } e2e_timespec;
  int clock_gettime(int clk_id, e2e_timespec *tp);
]]
local ts = ffi.new("e2e_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

-- Main state: the thread objects, read back in done().
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

-- Thread state. Globals below are read with thread:get() in done().
local tokens, n, i = {}, 0, 0
local stopped = false
local by_status = {}
ok, non200, sent, ntokens, t_first, t_last, statuses = 0, 0, 0, 0, 0, 0, ""

function init(args)
  local f = assert(io.open(args[1], "r"), "cannot open tokens file " .. tostring(args[1]))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      tokens[n] = line
    end
  end
  f:close()
  ntokens = n
  assert(n > 0, "no tokens in " .. args[1])
end

-- wrk calls delay() before every request, the first ones included, and request() when the
-- delay has run out. A connection is granted 0 ms only if a token is reserved for it;
-- otherwise it is parked for an hour (the run ends long before). Reserving closes the race
-- where many connections are granted 0 ms before any of them has taken a token.
local reserved = 0
local looping = false
function delay()
  looping = true
  if i + reserved < n then
    reserved = reserved + 1
    return 0
  end
  return 3600000
end

local function stop()
  if not stopped then
    stopped = true
    wrk.thread:stop()
  end
end

function request()
  if not looping then
    -- wrk calls request() once before the event loop starts, only to count the requests it
    -- returns (script_verify_request); that one is never sent, so it takes no token.
    return wrk.format("GET", wrk.path)
  end
  if i >= n then
    -- Not reached thanks to delay(); if it were (a reconnect), stop rather than reuse a token.
    stop()
    return wrk.format("GET", wrk.path)
  end
  if reserved > 0 then
    reserved = reserved - 1
  end
  i = i + 1
  sent = i
  if t_first == 0 then
    t_first = now_us()
  end
  return wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. tokens[i] })
end

function response(status, headers, body)
  t_last = now_us()
  if status == 200 then
    ok = ok + 1
  else
    non200 = non200 + 1
    by_status[status] = (by_status[status] or 0) + 1
    local parts = {}
    for s, c in pairs(by_status) do
      table.insert(parts, s .. "x" .. c)
    end
    statuses = table.concat(parts, ",")
  end
  if i >= n and ok + non200 >= sent then
    stop()
  end
end

function done(summary, latency, requests)
  local t_ok, t_bad, t_sent, t_tokens, span, st = 0, 0, 0, 0, 0, {}
  for _, t in ipairs(threads) do
    t_ok = t_ok + t:get("ok")
    t_bad = t_bad + t:get("non200")
    t_sent = t_sent + t:get("sent")
    t_tokens = t_tokens + t:get("ntokens")
    local first, last = t:get("t_first"), t:get("t_last")
    if last > first and last - first > span then
      span = last - first
    end
    local s = t:get("statuses")
    if s ~= "" then
      table.insert(st, s)
    end
  end
  local e = summary.errors
  io.write(string.format(
    "E2E_RESULT requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f status_errors=%.0f"
      .. " connect=%.0f read=%.0f write=%.0f timeout=%.0f\n",
    t_ok + t_bad, span, latency:percentile(50), latency:percentile(99), t_bad,
    e.connect, e.read, e.write, e.timeout))
  io.write(string.format("E2E_COLD ok=%.0f non200=%.0f sent=%.0f tokens=%.0f span_us=%.0f statuses=%s\n",
    t_ok, t_bad, t_sent, t_tokens, span, (#st > 0) and table.concat(st, ",") or "none"))
end
