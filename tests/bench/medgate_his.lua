-- wrk script: rotate GET /v1/data/his?patient_id=P000001..P001000 through medgate, with the
-- bench partner's key (config/bench.toml). A copy of shared/bench/wrk/rotate_gin.lua, adapted.
local i = 0
local n = tonumber(os.getenv("PATIENTS") or "1000")
local source = os.getenv("SOURCE") or "his"
local headers = { ["Authorization"] = "Bearer bench-key" }
request = function()
  i = i + 1
  return wrk.format("GET", string.format("/v1/data/%s?patient_id=P%06d", source, (i % n) + 1), headers)
end
