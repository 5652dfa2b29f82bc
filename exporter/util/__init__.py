"""Small helpers every part shares: error types, default paths.

Owns nothing of the domain. Imports only the standard library; every part may import it.
"""
