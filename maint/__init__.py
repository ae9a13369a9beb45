"""maint: put a Kubernetes Service behind a maintenance page for a window, and give it back."""

__version__ = "0.1.0"
