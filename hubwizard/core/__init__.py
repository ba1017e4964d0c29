"""What a site is, before any host is reached: the site file and its writer, secrets, steps
as data, templating and rendering, the journal, events, errors and redaction."""
