-- wrk script: POST pre-signed, distinct Real Geeks deliveries, headers as Real Geeks sends them
-- (one file line = "signature<TAB>timestamp<TAB>body").
-- Each wrk thread takes its own slice of the file, so no body is sent twice in a run.
local threads_started = 0

function setup(thread)
  thread:set("slot", threads_started)
  threads_started = threads_started + 1
end

function init(args)
  signatures, stamps, bodies = {}, {}, {}
  local path, thread_count = args[1], tonumber(args[2])
  local index = 0
  for line in io.lines(path) do
    if index % thread_count == slot then
      local tab = line:find("\t", 1, true)
      local second = line:find("\t", tab + 1, true)
      signatures[#signatures + 1] = line:sub(1, tab - 1)
      stamps[#stamps + 1] = line:sub(tab + 1, second - 1)
      bodies[#bodies + 1] = line:sub(second + 1)
    end
    index = index + 1
  end
  sent = 0
end

function request()
  sent = sent + 1
  local i = ((sent - 1) % #bodies) + 1
  return wrk.format("POST", "/webhooks/realgeeks",
    {["Content-Type"] = "application/json", ["X-Lead-Router-Signature"] = signatures[i],
     ["X-Lead-Router-Action"] = "created", ["X-Lead-Router-Timestamp"] = stamps[i]}, bodies[i])
end
