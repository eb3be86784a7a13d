-- wrk script for every target but the cold one (benches/e2e/run.sh). It defines neither
-- request() nor response(), so wrk keeps its fast static-request path; done() prints one
-- machine-readable line. status_errors is wrk's own count of responses with status >= 400.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "E2E_RESULT requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f status_errors=%.0f"
      .. " connect=%.0f read=%.0f write=%.0f timeout=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
