-- wrk script for the benchmarks: each request carries the next token of TOKENS_FILE (one
-- per line), cycling; with more tokens than the filter's cache holds (it evicts the oldest
-- entry first), every request is a cache miss: a cold, fully verified token.
local tokens = {}
local i = 0
local path = os.getenv("BENCH_PATH") or "/tickets/1"

function init(args)
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    tokens[#tokens + 1] = "Bearer " .. line
  end
end

function request()
  i = i % #tokens + 1
  return wrk.format("GET", path, { ["authorization"] = tokens[i] })
end
