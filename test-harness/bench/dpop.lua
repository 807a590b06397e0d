-- wrk script for the DPoP benchmark: every request carries TOKEN as `Authorization: DPoP`
-- and the next proof of PROOFS_FILE (one per line), each used once (a proof is accepted
-- once: the script stops sending when they run out, and the benchmark refuses such a run).
local proofs = {}
local i = 0
local path = os.getenv("BENCH_PATH") or "/tickets/1"
local auth = "DPoP " .. (os.getenv("TOKEN") or "")

function init(args)
  for line in io.lines(os.getenv("PROOFS_FILE")) do
    proofs[#proofs + 1] = line
  end
end

function request()
  i = i + 1
  local proof = proofs[i] or proofs[#proofs]
  return wrk.format("GET", path, { ["authorization"] = auth, ["dpop"] = proof })
end
