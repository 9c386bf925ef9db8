"""The engine as a service: one client API (``api.EngineClient``) and the engines behind it.

``api`` declares what every front end may call; ``local_engine`` runs the engine in a child
process of the app; the remote (Ray Serve) engine and its client live beside them. Nothing
here imports torch on the caller's side: the GUI process stays free of it.
"""
