-- wrk script for the soak bench: a steady, moderate load. Each connection waits DELAY_MS
-- between its requests (wrk's delay hook), so CONNS connections make about
-- CONNS * 1000 / DELAY_MS requests per second whatever the machine could do.
local delay_ms = tonumber(os.getenv("DELAY_MS") or "10")
function delay()
  return delay_ms
end
