-- pandoc Lua filter for the notebook's Markdown (scripts/pdf/notebook.md.j2): the output boxes and figures
-- become calls of the functions in cnnvis.typ.
local kinds = { output = true, stderr = true, error = true }

function Div(div)
  local kind = div.classes[1]
  if not kinds[kind] then
    return nil
  end
  if #div.content == 0 then
    return {}
  end
  local blocks = pandoc.Blocks({ pandoc.RawBlock("typst", '#output(kind: "' .. kind .. '")[') })
  blocks:extend(div.content)
  blocks:insert(pandoc.RawBlock("typst", "]"))
  return blocks
end

-- A paragraph that is one image (a figure of a code cell): full text width at most, centred.
function Para(para)
  if #para.content == 1 and para.content[1].t == "Image" then
    local src = para.content[1].src:gsub("\\", "\\\\"):gsub('"', '\\"')
    return pandoc.RawBlock("typst", '#figure-image("' .. src .. '")')
  end
end
