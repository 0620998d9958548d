"""Email: one raw RFC 5322 message -> the inbound record the engine accepts, or why not.

Pure and synchronous like the rest of the core (no I/O; the IMAP/SMTP connectors live in
`streams/`):
- `config`: the limits and maps the parser works with (values from the settings object);
- `text`: charsets (declared, mislabelled, unknown), headers, HTML -> text, quoted history;
- `mime`: the MIME tree within limits: the body text, the attachments it lists;
- `threads`: thread root from References / In-Reply-To / Message-ID, reply tokens in
  plus-addresses, vendor and order ids;
- `noise`: auto-replies (RFC 3834 and common headers) and bounces (RFC 3464);
- `parse`: all of it, `parse_email(raw, ...) -> Parsed | Classified | Rejected`.
"""
