"""The email connector's I/O (`router connect email`): IMAP and SMTP intake onto
`channel.email`. What to do with a message, and which SMTP code to answer, is the core's
(`router.email`)."""
