"""What a human reads: Jinja2 templates (French), a reporter's text fit to publish, X's length."""
