-- Argo CD health of a Ferry PipelineRun (resource.customizations.health.ferry.dev_PipelineRun).
-- Argo CD sets `obj` and reads the returned table. Pending and Running are Progressing,
-- Succeeded is Healthy, Failed is Degraded, and Cancelled is Degraded too: a cancelled run
-- never delivers its outputs, and it cannot be resumed (Suspended would promise a resume).
-- Written for Argo CD's Lua 5.1 (gopher-lua): no goto, no integer division, no os or io.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ferry operator to start the run"
  return hs
end

local succeeded = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Succeeded" then
      succeeded = condition
    end
  end
end
local detail = ""
if succeeded ~= nil and succeeded.message ~= nil and succeeded.message ~= "" then
  detail = ": " .. succeeded.message
end
local progress = ""
if status.progress ~= nil then
  progress = " (" .. status.progress .. " steps)"
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded" .. progress
elseif phase == "Failed" then
  local reason = "Failed"
  if succeeded ~= nil and succeeded.reason ~= nil and succeeded.reason ~= "" then
    reason = succeeded.reason
  end
  hs.status = "Degraded"
  hs.message = reason .. progress .. detail
elseif phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = "Cancelled" .. progress .. detail
else
  -- Pending, Running, or a phase newer than this check.
  hs.status = "Progressing"
  hs.message = phase .. progress .. detail
end
return hs
