-- Commands only; the module loads on first use. Servers start on require("codesearch").setup(),
-- or on the first command for the current buffer's repository.
if vim.g.loaded_codesearch then
  return
end
vim.g.loaded_codesearch = true

vim.api.nvim_create_user_command("CodeSearch", function(args)
  require("codesearch").search(args.args)
end, { nargs = "+", desc = "codesearch: search by meaning into the quickfix list" })

vim.api.nvim_create_user_command("CodeSearchSimilar", function()
  require("codesearch").similar()
end, { nargs = 0, desc = "codesearch: code like the function under the cursor into the quickfix list" })
