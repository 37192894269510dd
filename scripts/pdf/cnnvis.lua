-- pandoc Lua filter for the notebook's Markdown (scripts/pdf/notebook.md.j2): the output boxes and figures
-- become calls of the functions in cnnvis.typ. pandoc runs in the folder that holds the extracted figures.
local kinds = { output = true, stderr = true, error = true }
-- A text output of at most this many lines (a printed table, a few numbers) is kept on one page.
local short_lines = 15

local function is_short(div)
  if #div.content ~= 1 or div.content[1].t ~= "CodeBlock" then
    return false
  end
  local _, newlines = div.content[1].text:gsub("\n", "")
  return newlines + 1 <= short_lines
end

function Div(div)
  local kind = div.classes[1]
  if not kinds[kind] then
    return nil
  end
  if #div.content == 0 then
    return {}
  end
  local breakable = is_short(div) and "false" or "true"
  local blocks = pandoc.Blocks({ pandoc.RawBlock("typst", '#output(kind: "' .. kind .. '", breakable: ' .. breakable .. ")[") })
  blocks:extend(div.content)
  blocks:insert(pandoc.RawBlock("typst", "]"))
  return blocks
end

local function is_local_file(src)
  if src:match("^%a[%w+.-]*:") then -- a URL or data: URI: Typst reads local files only
    return false
  end
  local file = io.open(src, "rb")
  if file then
    file:close()
    return true
  end
  return false
end

-- An image Typst cannot load (a web address, an attachment, a file outside the export) becomes a note in
-- place of the image instead of stopping the export.
function Image(img)
  if not is_local_file(img.src) then
    local shown = img.src:match("^data:") and "embedded data" or img.src
    return pandoc.Emph({ pandoc.Str("[image not included: " .. shown .. "]") })
  end
end

-- A paragraph that is one image (a figure of a code cell): full text width at most, centred.
function Para(para)
  if #para.content == 1 and para.content[1].t == "Image" and is_local_file(para.content[1].src) then
    local src = para.content[1].src:gsub("\\", "\\\\"):gsub('"', '\\"')
    return pandoc.RawBlock("typst", '#figure-image("' .. src .. '")')
  end
end
