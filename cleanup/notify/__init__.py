"""Owner emails: digests per owner across environments, messages, and their delivery.

- ``cleanup.notify.digest``: group findings into owner, fallback and admin digests (pure).
- ``cleanup.notify.message``: build sanitised ``EmailMessage``s from the templates (pure).
- ``cleanup.notify.deliver``: write each message as ``.eml``, send it by SMTP or Graph,
  record ``deliveries.json``; ``notify_run`` is the entry of ``connref-cleanup notify``.
- ``cleanup.notify.settings``: the ``[notify]`` and ``[schedule]`` sections.

Nothing is imported here: ``cleanup.config`` imports the settings module, and importing the
delivery code (which imports the HTTP clients, which import the config) would be circular.
"""
