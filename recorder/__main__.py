from recorder.cli import app

app()
