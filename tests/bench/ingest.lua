-- wrk script for S3 (shared/bench/SCENARIOS.md): POST ~1 KB ePRO reports to
-- /v1/ingest/epro with the bench partner's key, patient ids rotating over 10,000; counts the
-- answers by status so the run can be checked against what the store holds afterwards.
--   wrk -t2 -c64 -d15s --latency -s tests/bench/ingest.lua http://127.0.0.1:8088
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  accepted, shed, other, n = 0, 0, 0, 0
end

local items = {
  '{"code":"8867-4","code_system":"http://loinc.org","display":"Heart rate","value":%d,"unit":"/min","effective":"2026-03-01T07:58:00+08:00"}',
  '{"code":"8480-6","code_system":"http://loinc.org","display":"Systolic blood pressure","value":%d,"unit":"mm[Hg]","effective":"2026-03-01T07:58:00+08:00"}',
  '{"code":"8462-4","code_system":"http://loinc.org","display":"Diastolic blood pressure","value":%d,"unit":"mm[Hg]","effective":"2026-03-01T07:58:00+08:00"}',
  '{"code":"8310-5","code_system":"http://loinc.org","display":"Body temperature","value":36.%d,"unit":"Cel","effective":"2026-03-01T07:58:00+08:00"}',
  '{"code":"29463-7","code_system":"http://loinc.org","display":"Body weight","value":7%d.5,"unit":"kg","effective":"2026-03-01T07:58:00+08:00"}',
  '{"code":"59408-5","code_system":"http://loinc.org","display":"Oxygen saturation","value":9%d,"unit":"%%","effective":"2026-03-01T07:58:00+08:00"}',
  '{"code":"72514-3","code_system":"http://loinc.org","display":"Pain severity","value":"mild %d","effective":"2026-03-01T07:58:00+08:00"}',
  '{"code":"44250-9","code_system":"http://loinc.org","display":"Little interest or pleasure","value":%d,"effective":"2026-03-01T07:58:00+08:00"}',
  '{"code":"28148-6","code_system":"http://loinc.org","display":"Took medication","value":true,"effective":"2026-03-01T07:58:0%d+08:00"}',
}

request = function()
  n = n + 1
  local patient = ((id * 7919 + n) % 10000) + 1
  local parts = {}
  for k, item in ipairs(items) do
    parts[k] = string.format(item, (n + k) % 9)
  end
  local body = string.format(
    '{"patient_id":"E%05d","reported_at":"2026-03-01T08:00:00+08:00","kind":"epro","app":{"id":"org.example.diary","version":"4.2.1"},"items":[%s]}',
    patient, table.concat(parts, ","))
  return wrk.format("POST", "/v1/ingest/epro", {
    ["Authorization"] = "Bearer bench-key",
    ["Content-Type"] = "application/json",
  }, body)
end

response = function(status, headers, body)
  if status == 202 then accepted = accepted + 1
  elseif status == 503 then shed = shed + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local a, s, o = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted"); s = s + t:get("shed"); o = o + t:get("other")
  end
  io.write(string.format("accepted %d shed %d other %d accepted/s %.0f\n", a, s, o, a / (summary.duration / 1e6)))
end
