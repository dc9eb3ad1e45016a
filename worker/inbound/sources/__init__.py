"""Source kinds: how a sender's own webhook (Shopify, Stripe, ...) becomes canonical events.

Kept free of imports: worker.config loads `spec` from here, and `spec` must not pull the
adapter (which needs the settings) in while the settings module is still loading.
"""
