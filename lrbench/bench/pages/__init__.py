"""Pages: one document model (headings, text, tables, images) rendered as Markdown or as one
self-contained HTML page; the report and the history page are both built with it."""
