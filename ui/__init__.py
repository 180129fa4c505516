"""The browser interfaces, thin over the library: the Gradio demo (``demo.py``) and the
streaming avatar server with its page (``server.py``, ``static/``). Installed as
``puppetry.ui``; Gradio and Starlette are imported only here."""
