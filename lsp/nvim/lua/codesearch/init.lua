-- The Neovim client of `codesearch lsp`: one server per repository root, attached to buffers of the
-- languages codesearch indexes, and two commands that put results in the quickfix list:
-- :CodeSearch {query} (codesearch/search) and :CodeSearchSimilar (codesearch/similar at the cursor).
--
-- Works on Neovim 0.7 (Debian 12), which has vim.lsp.start_client but not vim.lsp.start, and on
-- newer versions; the few calls whose shape changed go through the helpers marked "version".

local M = {}

local defaults = {
  -- The server command line.
  cmd = { "codesearch", "lsp" },
  -- A directory holding one of these is the repository root; without one, the working directory.
  root_markers = { ".git", ".codesearch", ".codesearch.toml" },
  -- Sent as initializationOptions: model, codeLens, duplicateDiagnostics, similarityThreshold, debounceMs.
  init_options = {},
  -- Buffers of these filetypes are attached to the server (the languages codesearch chunks).
  filetypes = {
    "python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "java",
    "ruby", "php", "rust", "c", "cpp", "cs",
  },
  -- Hits per :CodeSearch / :CodeSearchSimilar, and the search mode (nil: the server's default, hybrid).
  k = 20,
  mode = nil,
  -- How long a command waits for the server to start, and for a repository's first index.
  start_timeout_ms = 30000,
  index_timeout_ms = 300000,
}

M.config = vim.deepcopy(defaults)

local client_ids = {} -- root directory -> client id

local has_0_11 = vim.fn.has("nvim-0.11") == 1

local function notify(message, level)
  vim.notify("codesearch: " .. message, level or vim.log.levels.INFO)
end

--- The nearest directory at or above `path` that holds a root marker, else the working directory.
function M.find_root(path)
  local dir = (path ~= "" and vim.fn.fnamemodify(path, ":p:h")) or vim.fn.getcwd()
  while true do
    for _, marker in ipairs(M.config.root_markers) do
      if (vim.uv or vim.loop).fs_stat(dir .. "/" .. marker) then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ":h")
    if parent == dir then
      return vim.fn.getcwd()
    end
    dir = parent
  end
end

-- version: vim.lsp.start_client is deprecated from 0.11, where vim.lsp.start can start without attaching.
local function start_client(config)
  if has_0_11 then
    return vim.lsp.start(config, { attach = false })
  end
  return vim.lsp.start_client(config)
end

-- version: client methods take `self` from 0.11 on; before, they are closures called with a dot.
local function request(client, method, params, handler)
  if has_0_11 then
    return client:request(method, params, handler)
  end
  return client.request(method, params, handler)
end

--- The running client for `root`, started if there is none.
function M.client_for_root(root)
  local id = client_ids[root]
  local client = id and vim.lsp.get_client_by_id(id)
  if client and not client:is_stopped() then
    return client
  end
  id = start_client({
    name = "codesearch",
    cmd = M.config.cmd,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fn.fnamemodify(root, ":t") } },
    init_options = M.config.init_options,
    -- The server's "N similar" code lenses run codesearch.similar: show its hits, don't drop them.
    commands = {
      ["codesearch.similar"] = function(command, ctx)
        local lens_client = vim.lsp.get_client_by_id(ctx.client_id)
        if lens_client and command.arguments and command.arguments[1] then
          M.hits_to_quickfix(lens_client, "codesearch/similar", command.arguments[1], "codesearch: similar code")
        end
      end,
    },
  })
  if not id then
    notify("could not start " .. table.concat(M.config.cmd, " "), vim.log.levels.ERROR)
    return nil
  end
  client_ids[root] = id
  return vim.lsp.get_client_by_id(id)
end

--- The client for buffer `bufnr`'s repository (the working directory's for an unnamed buffer).
function M.client_for_buffer(bufnr)
  return M.client_for_root(M.find_root(vim.api.nvim_buf_get_name(bufnr)))
end

--- Attach a file buffer to its repository's server.
function M.attach(bufnr)
  if vim.bo[bufnr].buftype ~= "" or vim.api.nvim_buf_get_name(bufnr) == "" then
    return
  end
  local client = M.client_for_buffer(bufnr)
  if client then
    vim.lsp.buf_attach_client(bufnr, client.id)
  end
end

-- Run `fn` once the server has answered initialize (requests before that would break the protocol).
local function when_ready(client, fn)
  local waited = 0
  local function poll()
    if client:is_stopped() then
      notify("the server stopped; see :LspLog", vim.log.levels.ERROR)
    elseif client.initialized then
      fn()
    elseif waited >= M.config.start_timeout_ms then
      notify("the server did not start within " .. M.config.start_timeout_ms .. " ms", vim.log.levels.ERROR)
    else
      waited = waited + 50
      vim.defer_fn(poll, 50)
    end
  end
  poll()
end

--- Quickfix items from hits, in the server's order (best first).
function M.hits_to_items(hits)
  local items = {}
  for _, hit in ipairs(hits or {}) do
    table.insert(items, {
      filename = vim.uri_to_fname(hit.uri),
      lnum = hit.range.start.line + 1,
      col = hit.range.start.character + 1,
      text = string.format("%s  %.3f", hit.name, hit.score),
    })
  end
  return items
end

-- LSP's RequestFailed: what the server answers while a repository's first index is being built.
local REQUEST_FAILED = -32803

-- Call `done(building)` with whether some folder is still building its first index (no index, no error).
local function still_building(client, done)
  request(client, "codesearch/status", {}, function(err, result)
    for _, folder in ipairs((not err and result and result.folders) or {}) do
      if not folder.indexed and (folder.error == nil or folder.error == "") then
        return done(true)
      end
    end
    done(false)
  end)
end

-- Send `method`; while the server is still building the first index, wait for it and ask again.
local function request_when_indexed(client, method, params, handler, waited)
  waited = waited or 0
  request(client, method, params, function(err, result)
    if not (err and err.code == REQUEST_FAILED) or waited >= M.config.index_timeout_ms then
      return handler(err, result)
    end
    still_building(client, function(building)
      if not building then
        return handler(err, result)
      end
      if waited == 0 then
        notify("waiting for the index to be built")
      end
      vim.defer_fn(function()
        request_when_indexed(client, method, params, handler, waited + 500)
      end, 500)
    end)
  end)
end

-- Send `method` and put its hits in the quickfix list under `title`, then open it.
function M.hits_to_quickfix(client, method, params, title)
  when_ready(client, function()
    request_when_indexed(client, method, params, function(err, result)
      if err then
        notify(err.message or tostring(err), vim.log.levels.ERROR)
        return
      end
      local items = M.hits_to_items(result and result.hits)
      vim.fn.setqflist({}, " ", { title = title, items = items })
      if #items == 0 then
        notify(title .. ": nothing found")
        return
      end
      vim.cmd("copen")
    end, 0)
  end)
end

--- :CodeSearch {query}: search by meaning into the quickfix list.
function M.search(query)
  if not query or vim.trim(query) == "" then
    notify("give a query, e.g. :CodeSearch parse json", vim.log.levels.WARN)
    return
  end
  local client = M.client_for_buffer(vim.api.nvim_get_current_buf())
  if client then
    local params = { query = query, k = M.config.k, mode = M.config.mode }
    M.hits_to_quickfix(client, "codesearch/search", params, "codesearch: " .. query)
  end
end

--- :CodeSearchSimilar: the functions like the one under the cursor, into the quickfix list.
function M.similar()
  local bufnr = vim.api.nvim_get_current_buf()
  if vim.api.nvim_buf_get_name(bufnr) == "" then
    notify("put the cursor in a function of a file first", vim.log.levels.WARN)
    return
  end
  local client = M.client_for_buffer(bufnr)
  if not client then
    return
  end
  local position = vim.lsp.util.make_position_params(0, client.offset_encoding or "utf-16")
  local params = { uri = position.textDocument.uri, position = position.position, k = M.config.k }
  M.hits_to_quickfix(client, "codesearch/similar", params, "codesearch: similar code")
end

--- Configure, and attach the server to open and future buffers of the configured filetypes.
function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  for _, key in ipairs({ "cmd", "root_markers", "filetypes" }) do
    if opts and opts[key] then -- lists are replaced, not merged index by index
      M.config[key] = opts[key]
    end
  end
  local group = vim.api.nvim_create_augroup("codesearch", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) then
      M.attach(bufnr)
    end
  end
end

return M
