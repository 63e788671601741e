-- wrk script for bench/e2e.py: replays pre-signed panic deliveries.
--
--   wrk -t2 -c32 -d10s -s bench/panic.lua http://127.0.0.1:PORT/v1/gateways/panic \
--       -- REQUESTS_FILE THREADS
--
-- REQUESTS_FILE has one delivery per line: timestamp, signature, Idempotency-Key and the
-- JSON body, tab-separated (bodies are compact JSON, so they hold no tab or newline).
-- Signing happens in Python beforehand because wrk's Lua has no HMAC; the timestamps
-- must therefore be fresh (the server accepts 300 s of skew) when wrk starts.
--
-- Each thread takes every THREADS-th line, so no two threads send the same
-- Idempotency-Key. A thread that runs out of lines starts over: those requests are
-- idempotent replays (cheap stored answers), and done() reports how many there were.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2])
  requests = {}
  sent = 0
  distinct = 0
  statuses = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id then
      local ts, sig, key, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {
        ["Content-Type"] = "application/json",
        ["X-ERSS-Gateway"] = "panic",
        ["X-ERSS-Timestamp"] = ts,
        ["X-ERSS-Signature"] = sig,
        ["Idempotency-Key"] = key,
      }
      -- Formatting once here keeps request() to a table lookup, so wrk's own cost
      -- stays out of the measurement as far as possible.
      requests[#requests + 1] = wrk.format("POST", nil, headers, body)
    end
    i = i + 1
  end
  distinct = #requests
  if distinct == 0 then
    error("no requests for thread " .. id .. " in " .. path)
  end
end

function request()
  sent = sent + 1
  return requests[((sent - 1) % distinct) + 1]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests_)
  local sent_total, distinct_total, replays = 0, 0, 0
  local by_status = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("sent")
    local d = thread:get("distinct")
    sent_total = sent_total + s
    distinct_total = distinct_total + d
    if s > d then
      replays = replays + (s - d)
    end
    for code, n in pairs(thread:get("statuses")) do
      by_status[code] = (by_status[code] or 0) + n
    end
  end
  -- Machine-readable lines for bench/e2e.py; wrk's own report stays above them.
  io.write(string.format("ERSS_BENCH sent=%d distinct=%d replays=%d\n",
    sent_total, distinct_total, replays))
  for code, n in pairs(by_status) do
    io.write(string.format("ERSS_BENCH status %d=%d\n", code, n))
  end
  io.write(string.format("ERSS_BENCH latency_us p50=%d p90=%d p99=%d max=%d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
