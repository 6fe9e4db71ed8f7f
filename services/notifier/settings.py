"""The notifier's settings, read once from the environment."""

from pydantic import Field, SecretStr

from runtime.settings import LinkSettings, ServiceSettings
from services.notifier.channels import SmtpServer
from services.notifier.deliverers import RetryPolicy


class NotifierSettings(ServiceSettings, LinkSettings):
    port: int = Field(default=8005, ge=0, le=65535, alias="WF_NOTIFIER_PORT")  # /metrics and /healthz
    # Where people open what a notification links to: the web UI (the api serves it).
    public_url: str = Field(default="http://127.0.0.1:8000", alias="WF_PUBLIC_URL")
    smtp_host: str = Field(default="127.0.0.1", alias="WF_SMTP_HOST")
    smtp_port: int = Field(default=1025, ge=1, le=65535, alias="WF_SMTP_PORT")
    smtp_from: str = Field(default="workflows@localhost", alias="WF_SMTP_FROM")
    smtp_username: str = Field(default="", alias="WF_SMTP_USERNAME")
    smtp_password: SecretStr = Field(default=SecretStr(""), alias="WF_SMTP_PASSWORD")
    smtp_starttls: bool = Field(default=False, alias="WF_SMTP_STARTTLS")
    # A delivery a receiver does not take is tried again, each wait twice the last (from `first` to at most `max`),
    # until `retry_for` has passed since it was queued; then it is a dead letter.
    retry_for_s: float = Field(default=24 * 3600.0, gt=0, alias="WF_NOTIFY_RETRY_FOR_S")
    retry_first_s: float = Field(default=1.0, gt=0, alias="WF_NOTIFY_RETRY_FIRST_S")
    retry_max_s: float = Field(default=300.0, gt=0, alias="WF_NOTIFY_RETRY_MAX_S")

    @property
    def smtp(self) -> SmtpServer:
        return SmtpServer(
            host=self.smtp_host,
            port=self.smtp_port,
            sender=self.smtp_from,
            username=self.smtp_username,
            password=self.smtp_password.get_secret_value(),
            starttls=self.smtp_starttls,
        )

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.retry_for_s, self.retry_first_s, self.retry_max_s)
