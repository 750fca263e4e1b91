"""Django management commands shipped by headrace."""
