-- wrk script for the isolation bench: every request presents the next token from FLOOD_FILE
-- (wrong secrets under a real prefix, and random well-formed tokens), round-robin.
local tokens = {}
for line in io.lines(os.getenv("FLOOD_FILE")) do
  tokens[#tokens + 1] = line
end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/api", { ["Authorization"] = "Bearer " .. tokens[i] })
end
