-- Argo CD health of a Ferry ModelVersion (resource.customizations.health.ferry.dev_ModelVersion).
-- Argo CD sets `obj` and reads the returned table. The operator's Ready condition decides:
-- True is Healthy, False is Degraded, anything else (no status yet, Unknown, or a spec the
-- operator has not observed, such as a stage change just synced from Git) is Progressing.
-- Written for Argo CD's Lua 5.1 (gopher-lua): no goto, no integer division, no os or io.
local hs = {}
local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ferry operator to register the model version"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ferry operator to act on generation " .. tostring(generation)
  return hs
end

local ready = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end
local message = ""
if ready ~= nil then
  message = ready.message or ready.reason or ""
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
  if message == "" then
    message = "Waiting for the model version to become ready"
  end
end
hs.message = message
return hs
